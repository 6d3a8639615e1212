"""Stands in for `ssh -N -L …` in unit tests, where no SSH server can exist: takes the argv that
forwards.ssh_argv builds, listens on each `-L 127.0.0.1:LOCAL:127.0.0.1:REMOTE` local port and
relays every connection to 127.0.0.1:REMOTE (a local listener standing in for the remote side).
Like ssh with ExitOnForwardFailure, it exits 255 when a local port cannot be bound; like ssh
with -E, it appends its messages to the log file. Real ssh runs in the integration tests."""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import time


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _serve(listener: socket.socket, remote: int) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", remote))
        except OSError:
            client.close()  # as ssh: "channel open failed: connect failed"
            continue
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> int:
    log = sys.stderr
    forwards: list[tuple[int, int]] = []
    for flag, value in itertools.pairwise(argv):
        if flag == "-E":
            log = open(value, "a")  # noqa: SIM115  # kept open for the process's life
        if flag == "-L":
            _, local, _, remote = value.split(":")
            forwards.append((int(local), int(remote)))
    listeners = []
    for local, remote in forwards:
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", local))
        except OSError as e:
            print(f"bind [127.0.0.1]:{local}: {e.strerror}", file=log, flush=True)
            print(f"Could not request local forwarding for port {local}", file=log, flush=True)
            return 255
        listener.listen(16)
        listeners.append((listener, remote))
    for listener, remote in listeners:
        threading.Thread(target=_serve, args=(listener, remote), daemon=True).start()
    print(f"stand-in forwarding {forwards} for {argv[-1]}", file=log, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

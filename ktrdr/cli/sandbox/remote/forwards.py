"""SSH local forwards of a remote instance: the remote engine publishes the slot's ports on its
own 127.0.0.1, and one `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE …` per instance makes them
reachable at localhost ports on the user's machine (the instance's block of forward ports,
ports.forward_ports: what `.env.sandbox` and `status` show).

The forwarder is an owned process (home/owned_process.py: recorded, stopped by pid, orphans found by
marker).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import SshEndpoint
from ktrdr.cli.sandbox.home import owned_process
from ktrdr.cli.sandbox.home.owned_process import Orphan, OwnedProcess
from ktrdr.cli.sandbox.slots.ports import SlotPorts

KIND = "forward"
READY_TIMEOUT = 30.0  # ssh connects and authenticates first
SSH_OPTIONS = (
    "ExitOnForwardFailure=yes",  # a port it cannot bind is an error, not a silent half-forward
    "ServerAliveInterval=5",  # a dead connection ends ssh within ~15 s (doctor, status see it)
    "ServerAliveCountMax=3",
    "BatchMode=yes",  # never a password prompt from a background process
)


def ssh_argv(
    endpoint: SshEndpoint,
    pairs: Sequence[tuple[int, int]],
    *,
    log_file: Path,
    ssh_command: Sequence[str] = ("ssh",),
) -> list[str]:
    """`ssh -N -o … -E LOG -L 127.0.0.1:L:127.0.0.1:R … [-p PORT] -- [user@]host`."""
    argv = [*ssh_command, "-N"]
    for option in SSH_OPTIONS:
        argv += ["-o", option]
    argv += ["-E", str(log_file)]
    for local, remote in pairs:
        argv += ["-L", f"127.0.0.1:{local}:127.0.0.1:{remote}"]
    return [*argv, *endpoint.ssh_args()]


def start(
    instance_id: str,
    endpoint: SshEndpoint,
    pairs: Sequence[tuple[int, int]],
    directory: Path,
    *,
    ssh_command: Sequence[str] = ("ssh",),
    timeout: float = READY_TIMEOUT,
) -> OwnedProcess:
    """Start the instance's forwarder (stopping a previous one first) and wait until every
    local port accepts connections; SandboxError with ssh's last words when it exits first."""
    previous = owned_process.load(directory, KIND)
    if previous is not None:
        owned_process.stop(previous)
    busy = [local for local, _ in pairs if not free(local)]
    if busy:  # else "accepts connections" would be true of whoever holds the port
        raise SandboxError(
            f"cannot forward the ports of {instance_id}: local port(s) "
            f"{', '.join(map(str, busy))} are in use: stop what holds them (`ss -ltnp`), then "
            "run `ktrdr sandbox up` again"
        )
    directory.mkdir(parents=True, exist_ok=True)
    log_file = owned_process.log_path(directory, KIND)
    argv = ssh_argv(endpoint, pairs, log_file=log_file, ssh_command=ssh_command)
    return owned_process.launch(
        argv,
        kind=KIND,
        instance_id=instance_id,
        directory=directory,
        ready=lambda: all(accepts(local) for local, _ in pairs),
        timeout=timeout,
        what=f"the SSH forwarder of {instance_id} to {endpoint.destination}",
        details={"pairs": [[local, remote] for local, remote in pairs], "host": endpoint.host},
    )


def stop(directory: Path) -> bool:
    """Stop the instance's forwarder; True when one was running."""
    record = owned_process.load(directory, KIND)
    return owned_process.stop(record) if record is not None else False


def current(directory: Path) -> OwnedProcess | None:
    """The recorded forwarder (alive or not: check with `alive`)."""
    return owned_process.load(directory, KIND)


def alive(record: OwnedProcess) -> bool:
    return owned_process.alive(record)


def orphans(root: Path) -> list[Orphan]:
    """SSH forwarders under this home's state root that no live record accounts for."""
    return owned_process.orphans(root, KIND)


def accepts(port: int, *, timeout: float = 0.5) -> bool:
    """Something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def free(port: int) -> bool:
    """A listener could bind 127.0.0.1:port now. SO_REUSEADDR as ssh sets it: connections of
    a forwarder just stopped (TIME_WAIT) do not make its port busy, another listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pairs(remote: SlotPorts, local: SlotPorts) -> list[tuple[int, int]]:
    """(local, remote) for every port of the slot, matched by name (api, db, …, workers)."""
    remote_ports, local_ports = remote.all_ports(), local.all_ports()
    return [(local_ports[name], port) for name, port in remote_ports.items()]

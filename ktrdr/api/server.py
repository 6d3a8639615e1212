"""Serving the backend and the workers: uvicorn in this very process, hot reload by re-executing
the process when a `.py` file of the source changes.

`uvicorn --reload` keeps a supervisor process (and multiprocessing's resource tracker) beside
every server, ~20 MiB of an idle container's ~75, and the supervisor polls for changes 20 times
a second; uvicorn's own main loop wakes 10 times a second. Here one process serves: a thread
blocks on inotify (ktrdr/api/watch.py), and the main loop sleeps until told to stop.

On a change the server shuts down as on SIGTERM (lifespan shutdown; a running job finishes),
then the process execs itself: same PID, same command line, a fresh interpreter on the new
source. The listening socket is inherited across the exec (its descriptor number in
KTRDR_LISTEN_FD), so a request arriving meanwhile waits in its backlog instead of being refused.
If the new source does not load, the traceback is logged and the process waits for the next
change, as with `uvicorn --reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path
from types import FrameType
from typing import NoReturn

import uvicorn
from uvicorn.server import ServerState

from ktrdr.api.observability import quiet_polled_requests
from ktrdr.api.watch import SourceWatcher

log = logging.getLogger("uvicorn.error")  # configured by uvicorn: lines look like its own

LISTEN_FD_ENV = "KTRDR_LISTEN_FD"
# Longer than every client's interval (heartbeats 5 s, scrapes 30 s), so they keep their
# connection instead of opening one per request; clients close theirs first (heartbeats: 30 s).
KEEP_ALIVE_S = 65
STARTUP_FAILURE = 3  # uvicorn's exit code when the app cannot start
# Signals and `request_exit` wake the main loop at once; this is only a backstop for anything
# else that sets `should_exit`.
EXIT_CHECK_S = 30.0


class QuietServer(uvicorn.Server):
    """uvicorn's server without its timer: uvicorn's main loop wakes ten times a second, to see
    whether it should stop and to refresh the Date header. Here the loop sleeps until told to
    stop (a signal, `request_exit` from another thread), and the Date header is made when a
    response asks for it."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.server_state = _DateOnDemand(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        # Tick 1, not 0: the headers need no refresh; what remains are uvicorn's exit checks.
        while not await self.on_tick(1):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=EXIT_CHECK_S)
            self._wake.clear()

    def request_exit(self) -> None:
        """Stop serving (graceful, as on SIGTERM); callable from any thread."""
        self.should_exit = True
        self._wake_up()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._wake_up()

    @property
    def stopped_by_signal(self) -> bool:
        return bool(self._captured_signals)

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)


class _DateOnDemand(ServerState):
    """uvicorn's default response headers, with the Date made when a response reads them (once
    per second at most) instead of by a timer."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._config = config
        self._second = -1
        self._headers: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property  # an attribute in ServerState, computed here
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        now = time.time()
        if int(now) != self._second:
            date = [(b"date", formatdate(now, usegmt=True).encode())]
            extra: list[tuple[bytes, bytes]] = self._config.encoded_headers
            self._headers = (date if self._config.date_header else []) + extra
            self._second = int(now)
        return self._headers

    @default_headers.setter
    def default_headers(self, value: list[tuple[bytes, bytes]]) -> None:
        pass  # ServerState.__init__ and uvicorn's tick assign it; it is computed here


def serve(
    target: str,
    *,
    host: str,
    port: int,
    factory: bool = False,
    reload_dir: Path | None = None,
    log_level: str = "info",
    access_log: bool = True,
    timeout_graceful_shutdown: int | None = None,
) -> None:
    """Serve `target` ("module:attribute", an app or with `factory` a function returning one)
    on host:port until SIGTERM/SIGINT; with `reload_dir`, restart on source changes there."""
    config = uvicorn.Config(
        target,
        factory=factory,
        log_level=log_level,
        access_log=access_log,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
    )
    quiet_polled_requests()
    watcher = _start_watcher(reload_dir) if reload_dir is not None else None
    sock = _listening_socket(host, port, keep_across_exec=watcher is not None)
    server = QuietServer(config)
    try:
        config.load()
        if watcher is not None:
            watcher.on_change = server.request_exit
            if watcher.changed.is_set():  # changed while loading
                server.request_exit()
        server.run(sockets=[sock.dup()])  # uvicorn closes the sockets it is given: keep ours
    except (Exception, SystemExit) as e:
        if watcher is None:
            raise
        # The log must end in the exception, as with `uvicorn --reload`: that is how the gate
        # and `status` tell a service stuck on a broken edit (ktrdr/cli/sandbox/gate/checks.py).
        if not isinstance(e, SystemExit):  # uvicorn logged its own reason before exiting
            log.exception(
                "%s did not start; the next change under %s restarts it", target, reload_dir
            )
        _wait_for_change(watcher)
        _reexec(sock, watcher)
    if watcher is not None and watcher.changed.is_set() and not server.stopped_by_signal:
        _reexec(sock, watcher)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _start_watcher(root: Path) -> SourceWatcher:
    watcher = SourceWatcher(root)
    watcher.start()
    log.info("hot reload: watching %s for .py changes", root)
    return watcher


def _listening_socket(host: str, port: int, *, keep_across_exec: bool) -> socket.socket:
    """The socket inherited from before a reload, else a new one bound to host:port (uvicorn
    starts listening on it)."""
    inherited = os.environ.pop(LISTEN_FD_ENV, "")
    if inherited:
        sock = socket.socket(fileno=int(inherited))
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            log.error("cannot listen on %s:%s: %s", host, port, e.strerror or e)
            sys.exit(STARTUP_FAILURE)
        log.info("serving on http://%s:%s", host, sock.getsockname()[1])
    sock.set_inheritable(keep_across_exec)
    return sock


def _wait_for_change(watcher: SourceWatcher) -> None:
    _exit_on_sigterm()
    watcher.wait()


def _exit_on_sigterm() -> None:
    """Outside uvicorn's own handling: PID 1 of a container ignores a SIGTERM it has no
    handler for, and `docker stop` would wait its 10 s."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _reexec(sock: socket.socket, watcher: SourceWatcher) -> NoReturn:
    """Replace this process with a fresh run of the same command line, keeping the socket."""
    _exit_on_sigterm()
    _join_running_threads()
    log.info("%s changed: reloading", ", ".join(watcher.changes) or "the source")
    os.environ[LISTEN_FD_ENV] = str(sock.fileno())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _join_running_threads() -> None:
    """Let non-daemon threads (a worker's running job) finish, as the interpreter would on
    exit: exec would kill them mid-way."""
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(timeout=0.5)  # most are winding down already (anyio's, the executor's)
        if thread.is_alive():
            log.info("waiting for %s to finish before reloading", thread.name)
            thread.join()

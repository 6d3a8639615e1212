"""The only subprocess call site: argv lists, a timeout, failures with command and stderr."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ktrdr.cli.sandbox.base.errors import SandboxError

STDERR_TAIL_LINES = 15
INTERRUPT_GRACE = 30.0  # seconds a child gets to clean up after SIGINT


@dataclass(frozen=True)
class ProcResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class CommandFailedError(SandboxError):
    def __init__(self, message: str, result: ProcResult) -> None:
        super().__init__(message)
        self.result = result


def run(
    argv: Sequence[object],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    check: bool = True,
    capture: bool = True,
    what: str | None = None,
) -> ProcResult:
    """Run argv (never through a shell). With check, a non-zero exit raises CommandFailedError
    naming `what` (or the command) with the tail of stderr; `capture=False` inherits the
    terminal for long, user-visible commands."""
    args = [str(a) for a in argv]
    label = what or " ".join(args[:3])
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            text=True,
            capture_output=capture,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise SandboxError(f"{label} failed: {args[0]} is not installed or not on PATH") from e
    except subprocess.TimeoutExpired as e:
        raise SandboxError(f"{label} did not finish within {timeout:g}s: {' '.join(args)}") from e
    result = ProcResult(args, completed.returncode, completed.stdout or "", completed.stderr or "")
    if check and result.returncode != 0:
        raise CommandFailedError(
            f"{label} failed (exit {result.returncode}): {stderr_tail(result.stderr)}", result
        )
    return result


def concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Independent queries at once (each mostly waits on a `docker …` child; each call names
    its engine itself). Results in order; the first exception is raised once all have
    finished."""
    if len(calls) < 2:
        return [call() for call in calls]
    # Here, not at the top: thread pools cost `list` ~4 MiB, and most commands run one child.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls), thread_name_prefix="ktrdr-query") as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


def stream(
    argv: Sequence[object],
    *,
    on_line: Callable[[str], None],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    what: str | None = None,
) -> int:
    """Run argv with stdout and stderr merged, handing each line to `on_line`; returns the exit
    code. For callers that cannot let a child write to their stdout (the MCP server speaks its
    protocol there). On KeyboardInterrupt the child gets SIGINT, as from a terminal's Ctrl-C,
    and is waited for so it can clean up (e.g. `compose run --rm` removes its container)."""

    args = [str(a) for a in argv]
    label = what or " ".join(args[:3])
    try:
        child = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except FileNotFoundError as e:
        raise SandboxError(f"{label} failed: {args[0]} is not installed or not on PATH") from e
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        child.kill()

    timer = threading.Timer(timeout or 0.0, expire)
    if timeout is not None:
        timer.daemon = True
        timer.start()
    try:
        code = _pump_lines(child, on_line)
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise SandboxError(f"{label} did not finish within {timeout:g}s: {' '.join(args)}")
    return code


def _pump_lines(child: subprocess.Popen[str], on_line: Callable[[str], None]) -> int:
    """Hand the child's output to `on_line` until it exits; Ctrl-C reaches it as SIGINT."""

    try:
        assert child.stdout is not None  # stdout=PIPE
        for line in child.stdout:
            on_line(line.rstrip("\n"))
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        if child.stdout is not None:
            child.stdout.close()


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(tail) if tail else "no error output"


def spawn(
    argv: Sequence[object], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start argv in the background with stdout/stderr captured, for a caller that must be able
    to stop it (e.g. `compose up` while the gate already saw a crash). Never through a shell."""
    args = [str(a) for a in argv]
    try:
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,  # only calls prctl: safe after fork
        )
    except FileNotFoundError as e:
        raise SandboxError(f"{args[0]} is not installed or not on PATH") from e


def _die_with_parent() -> None:
    """Linux: SIGTERM the child when ktrdr dies, even by SIGKILL, so a killed `up` cannot leave
    a `compose up` creating containers after `doctor` or `destroy` has cleaned up. The signal
    follows the spawning *thread*, so spawn from the main thread."""
    if sys.platform != "linux":
        return
    import ctypes  # here: only children that must die with us need it, and only on Linux

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def detach(
    argv: Sequence[object],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv in its own session (it outlives ktrdr, and a terminal's Ctrl-C does not reach
    it), stdout and stderr appended to `log_path`; for companion processes that ktrdr records
    and stops later by pid (home/owned_process.py). Never through a shell."""
    args = [str(a) for a in argv]
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                args,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as e:
            raise SandboxError(f"{args[0]} is not installed or not on PATH") from e


def piped(
    argv: Sequence[object],
    *,
    write: Callable[[IO[bytes]], None] | None = None,
    read: Callable[[IO[bytes]], None] | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    what: str | None = None,
) -> ProcResult:
    """Run argv with a byte stream: `write` fills its stdin (then it is closed), `read`
    consumes its stdout (e.g. a tar stream to or from a container; stdout is kept as text
    without it). A non-zero exit, a child that stopped reading its input, or the timeout
    (which kills it) raise like `run`; an exception in `read` is raised as it is."""
    args = [str(a) for a in argv]
    label = what or " ".join(args[:3])
    try:
        child = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if write else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as e:
        raise SandboxError(f"{label} failed: {args[0]} is not installed or not on PATH") from e
    pump = _Pump(child, read)
    timed_out, timer = _kill_after(child, timeout)
    try:
        broken = _feed(child, write)
        child.wait()
        pump.join()
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise SandboxError(f"{label} did not finish within {timeout:g}s: {' '.join(args)}")
    if pump.failure is not None:
        raise pump.failure
    result = ProcResult(args, child.returncode, pump.stdout, pump.stderr)
    if result.returncode != 0 or broken:
        raise CommandFailedError(
            f"{label} failed (exit {result.returncode}): {stderr_tail(result.stderr)}", result
        )
    return result


def _kill_after(
    child: subprocess.Popen[bytes], timeout: float | None
) -> tuple[threading.Event, threading.Timer]:
    """A started timer that kills `child` after `timeout` (none: never) and sets the event."""
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        child.kill()

    timer = threading.Timer(timeout or 0.0, expire)
    timer.daemon = True
    if timeout is not None:
        timer.start()
    return timed_out, timer


class _Pump:
    """Drains a child's stdout (into `read`, or kept) and stderr on two threads."""

    def __init__(
        self, child: subprocess.Popen[bytes], read: Callable[[IO[bytes]], None] | None
    ) -> None:
        assert child.stdout is not None  # PIPE
        assert child.stderr is not None  # PIPE
        self._out, self._err, self._read = child.stdout, child.stderr, read
        self._chunks: dict[str, bytes] = {}
        self.failure: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._drain_out, daemon=True),
            threading.Thread(target=self._drain_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain_out(self) -> None:
        try:
            if self._read is None:
                self._chunks["out"] = self._out.read()
                return
            self._read(self._out)
            self._out.read()  # whatever the reader left, so the child never blocks
        except BaseException as e:  # re-raised in the caller's thread
            self.failure = e
            with contextlib.suppress(OSError):
                self._out.close()

    def _drain_err(self) -> None:
        self._chunks["err"] = self._err.read()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    @property
    def stdout(self) -> str:
        return self._chunks.get("out", b"").decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self._chunks.get("err", b"").decode("utf-8", "replace")


def _feed(child: subprocess.Popen[bytes], write: Callable[[IO[bytes]], None] | None) -> bool:
    """Hand the child's stdin to `write`, then close it; True when the child stopped reading."""
    if write is None or child.stdin is None:
        return False
    try:
        write(child.stdin)
        child.stdin.close()
    except BrokenPipeError:
        with contextlib.suppress(BrokenPipeError):
            child.stdin.close()
        return True
    return False

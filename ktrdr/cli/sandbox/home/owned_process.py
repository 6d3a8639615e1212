"""Companion processes an instance owns while it is up (the SSH forwarder, `docker compose
watch`): started detached in their own session, recorded in the instance's state dir, stopped
by pid only when it is provably still the process that was started, and found again when
their record is gone (orphans).

A record holds the pid, the kernel's start time of that pid (field 22 of /proc/PID/stat: a
reused pid has another) and the program name. Every owned process also carries
`KTRDR_OWNED_PROCESS=<its record path>#<run id>` in its environment, inherited by everything it
starts (the `docker` CLI runs Compose, which runs `ssh … docker system dial-stdio` per
connection to an ssh:// engine, in process groups of their own): that marker, read from
/proc/PID/environ, proves which run of which record a process belongs to, even after the
record is gone or the leader has died, and no other process is ever signalled.

Linux only (/proc); elsewhere nothing is found alive and nothing is signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import ktrdr_home

MARKER = "KTRDR_OWNED_PROCESS"
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
POLL = 0.1
LOG_TAIL_LINES = 8


@dataclass(frozen=True)
class OwnedProcess:
    kind: str  # "forward", "watch"
    instance_id: str
    pid: int  # also the process group: each runs in its own session
    started: int  # /proc/PID/stat start time, clock ticks since boot
    program: str  # basename of /proc/PID/cmdline's first word (a script shows its interpreter)
    argv: list[str]
    log_path: str
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""  # the marker's suffix: tells this run from an earlier one of the record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def marker(self) -> str:
        return f"{record_path(Path(self.log_path).parent, self.kind)}#{self.run_id}"


@dataclass(frozen=True)
class Orphan:
    """Processes of one run (one marker) under this home's state root that no live record
    accounts for."""

    marker: str
    pids: list[int]
    cmdline: str  # of the first of them

    @property
    def record_path(self) -> str:
        return self.marker.rpartition("#")[0]


def state_root() -> Path:
    """Where instances' companion-process records live: `$KTRDR_HOME/run`."""
    return ktrdr_home() / "run"


def state_dir(instance_id: str) -> Path:
    return state_root() / instance_id


def record_path(directory: Path, kind: str) -> Path:
    return directory / f"{kind}.json"


def log_path(directory: Path, kind: str) -> Path:
    return directory / f"{kind}.log"


def launch(
    argv: Sequence[object],
    *,
    kind: str,
    instance_id: str,
    directory: Path,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    details: Mapping[str, Any] | None = None,
) -> OwnedProcess:
    """Start argv detached, record it, and wait until `ready()` (polled) is true. When the
    process exits first, or `timeout` passes, it is stopped, its record removed, and
    SandboxError names `what` with the tail of its log."""
    directory.mkdir(parents=True, exist_ok=True)
    log = log_path(directory, kind)
    log.write_bytes(b"")  # this run's log only
    run_id = os.urandom(6).hex()
    marker = f"{record_path(directory, kind)}#{run_id}"
    child_env = {**(dict(env) if env is not None else dict(os.environ)), MARKER: marker}
    child = proc.detach(argv, log_path=log, cwd=cwd, env=child_env)
    args = [str(a) for a in argv]
    record = OwnedProcess(
        kind,
        instance_id,
        child.pid,
        start_time(child.pid) or 0,
        Path((cmdline(child.pid) or args)[0]).name,  # as the kernel shows it (after exec)
        args,
        str(log),
        dict(details or {}),
        run_id,
    )
    save(record)  # before waiting: a ktrdr killed now still leaves the process findable
    deadline = time.monotonic() + timeout
    while not ready():
        code = child.poll()
        if code is not None or time.monotonic() > deadline:
            stop(record)
            why = f"exited (code {code})" if code is not None else f"not ready in {timeout:g}s"
            raise SandboxError(f"{what} {why}: {log_tail(log)}")
        time.sleep(POLL)
    return record


def save(record: OwnedProcess) -> None:
    path = record_path(Path(record.log_path).parent, record.kind)
    write_atomic(path, json.dumps(record.to_json(), indent=2) + "\n")


def load(directory: Path, kind: str) -> OwnedProcess | None:
    """The recorded process of `kind`, or None (no record, or one that cannot be read: the
    process it named is then found by `orphans`)."""
    try:
        data = json.loads(record_path(directory, kind).read_text(encoding="utf-8"))
        return OwnedProcess(**data)
    except (OSError, ValueError, TypeError):
        return None


def alive(record: OwnedProcess) -> bool:
    """The recorded pid runs, is no zombie, started when recorded, and runs the same program."""
    stat = _stat(record.pid)
    if stat is None or stat[0] == "Z" or int(stat[19]) != record.started:
        return False
    args = cmdline(record.pid)
    return args is not None and bool(args) and Path(args[0]).name == record.program


def stop(record: OwnedProcess, *, grace: float = STOP_GRACE) -> bool:
    """SIGTERM the record's process group and every other process of its run, SIGKILL after
    `grace`; the record file is removed when it still names this run. Only the live recorded
    leader and processes carrying the run's marker are signalled. True when any was running."""
    running = _members(record)
    _terminate(record.marker, running, leader=record.pid if alive(record) else None, grace=grace)
    current = load(Path(record.log_path).parent, record.kind)
    if current is not None and current.run_id == record.run_id:
        record_path(Path(record.log_path).parent, record.kind).unlink(missing_ok=True)
    return bool(running)


def orphans(root: Path, kind: str | None = None) -> list[Orphan]:
    """Runs whose marker lies under `root` (of `kind` when given) with live processes that no
    live record accounts for: the record is gone, unreadable, dead, or of another run."""
    runs: dict[str, list[int]] = {}
    for pid, marker in _marked(root):
        path = Path(marker.rpartition("#")[0])
        if kind is None or path.name == f"{kind}.json":
            runs.setdefault(marker, []).append(pid)
    found = []
    for marker, pids in sorted(runs.items()):
        path = Path(marker.rpartition("#")[0])
        record = load(path.parent, path.name.removesuffix(".json"))
        if record is not None and record.marker == marker and alive(record):
            continue
        found.append(Orphan(marker, sorted(pids), " ".join(cmdline(min(pids)) or [])))
    return found


def stop_orphan(orphan: Orphan, *, grace: float = STOP_GRACE) -> None:
    """Stop an orphan's processes (checked again by marker, so a reused pid is never hit)."""
    pids = [pid for pid, marker in _marked(Path("/")) if marker == orphan.marker]
    _terminate(orphan.marker, pids, leader=None, grace=grace)


def _terminate(marker: str, pids: Sequence[int], *, leader: int | None, grace: float) -> None:
    if not pids:
        return
    _send(marker, leader, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for pid in pids:
            _reap(pid)
        if not _run_alive(marker, leader):
            return
        time.sleep(POLL)
    _send(marker, leader, signal.SIGKILL)
    for pid in pids:
        _reap(pid)


def _send(marker: str, leader: int | None, sig: signal.Signals) -> None:
    """`sig` to the leader's group (when it is the live recorded leader) and to every live
    process carrying `marker`."""
    if leader is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, sig)
    for pid, found in _marked(Path(marker.rpartition("#")[0]).parent.parent):
        if found == marker:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _run_alive(marker: str, leader: int | None) -> bool:
    if leader is not None and _running(leader):
        return True
    return any(m == marker for _, m in _marked(Path(marker.rpartition("#")[0]).parent.parent))


def stop_all(directory: Path, *, grace: float = STOP_GRACE) -> list[str]:
    """Stop every recorded process of an instance's state dir (down, destroy); returns the
    kinds that were running."""
    stopped = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        record = load(directory, path.stem)
        if record is not None and stop(record, grace=grace):
            stopped.append(record.kind)
    return stopped


def remove_state(directory: Path) -> None:
    """Destroy: stop what the instance still runs, then drop its state dir (records, logs)."""

    stop_all(directory)
    shutil.rmtree(directory, ignore_errors=True)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no log"
    return proc.stderr_tail(text, lines)


# --- /proc -------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [0] state, [2] pgid, [19] start time."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return int(stat[19]) if stat is not None else None


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _environ_marker(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return None
    prefix = f"{MARKER}=".encode()
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode("utf-8", "replace")
    return None


def _marked(root: Path) -> list[tuple[int, str]]:
    """(pid, marker) of every live, readable process whose marker lies under `root`."""
    found = []
    base = str(root.resolve()).rstrip(os.sep) + os.sep
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            marker = _environ_marker(pid)
            if marker is None or not os.path.realpath(marker).startswith(base):
                continue
            if _running(pid):
                found.append((pid, marker))
    return found


def _members(record: OwnedProcess) -> list[int]:
    """Live pids of the record's run: the recorded leader, and every process with its marker."""
    members = [record.pid] if alive(record) else []
    root = Path(record.log_path).parent.parent
    members += [pid for pid, marker in _marked(root) if marker == record.marker]
    return sorted(set(members))


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)

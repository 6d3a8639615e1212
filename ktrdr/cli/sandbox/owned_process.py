"""Companion processes an instance owns while it is up (the SSH forwarder, `docker compose
watch`): started detached in their own session, recorded in the instance's state dir, stopped
by pid only when it is provably still the process that was started, and found again when
their record is gone (orphans).

A record holds the pid, the kernel's start time of that pid (field 22 of /proc/PID/stat: a
reused pid has another) and the program name. Every owned process also carries
`KTRDR_OWNED_PROCESS=<its record path>` in its environment, inherited by its children (the
`docker` CLI runs Compose as a child): that marker, read from /proc/PID/environ, proves
ownership of a process even after its record is gone or its leader has died.

Linux only (/proc); elsewhere nothing is found alive and nothing is signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox import proc
from ktrdr.cli.sandbox.atomic import write_atomic
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.home import ktrdr_home

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
    program: str  # basename of argv[0]
    argv: list[str]
    log_path: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Orphan:
    """A process group carrying this home's marker that no live record accounts for."""

    pgid: int
    pids: list[int]
    record_path: str
    cmdline: str


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
    log, record_file = log_path(directory, kind), record_path(directory, kind)
    log.write_bytes(b"")  # this run's log only
    child_env = {**(dict(env) if env is not None else dict(os.environ)), MARKER: str(record_file)}
    child = proc.detach(argv, log_path=log, cwd=cwd, env=child_env)
    args = [str(a) for a in argv]
    record = OwnedProcess(
        kind,
        instance_id,
        child.pid,
        start_time(child.pid) or 0,
        Path(args[0]).name,
        args,
        str(log),
        dict(details or {}),
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
    """SIGTERM the record's process group, SIGKILL after `grace`; the record file is removed
    (when it still names this process). Only processes that are the live recorded leader or
    carry the record's marker are signalled. True when something was running."""
    running = _members(record)
    if running:
        _signal_group(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _members(record) and time.monotonic() < deadline:
            _reap(record.pid)
            time.sleep(POLL)
        if _members(record):
            _signal_group(record.pid, signal.SIGKILL)
        _reap(record.pid)
    current = load(Path(record.log_path).parent, record.kind)
    if current is not None and current.pid == record.pid:
        record_path(Path(record.log_path).parent, record.kind).unlink(missing_ok=True)
    return bool(running)


def orphans(root: Path, kind: str | None = None) -> list[Orphan]:
    """Process groups whose marker points under `root` (of `kind` when given) that no live
    record accounts for: the record is gone, unreadable, or names another process."""
    groups: dict[int, list[int]] = {}
    paths: dict[int, str] = {}
    for pid, marker in _marked(root):
        if kind is not None and Path(marker).name != f"{kind}.json":
            continue
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            continue
        pgid = int(stat[2])
        groups.setdefault(pgid, []).append(pid)
        paths[pgid] = marker
    found = []
    for pgid, pids in sorted(groups.items()):
        path = Path(paths[pgid])
        record = load(path.parent, path.name.removesuffix(".json"))
        if record is not None and record.pid == pgid and alive(record):
            continue
        found.append(Orphan(pgid, sorted(pids), str(path), " ".join(cmdline(pgid) or [])))
    return found


def stop_orphan(orphan: Orphan, *, grace: float = STOP_GRACE) -> None:
    """Stop an orphan's group (still checked by marker, so a reused pgid is never hit)."""
    marker = Path(orphan.record_path)
    record = OwnedProcess("", "", orphan.pgid, -1, "", [], str(marker.parent / "orphan.log"))
    if _members(record, marker=str(marker)):
        _signal_group(orphan.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _members(record, marker=str(marker)) and time.monotonic() < deadline:
            time.sleep(POLL)
        if _members(record, marker=str(marker)):
            _signal_group(orphan.pgid, signal.SIGKILL)


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
    """(pid, marker) of every readable process whose marker lies under `root`."""
    found = []
    base = str(root.resolve()) + os.sep
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            marker = _environ_marker(int(entry.name))
            if marker is not None and os.path.realpath(marker).startswith(base):
                found.append((int(entry.name), marker))
    return found


def _members(record: OwnedProcess, *, marker: str | None = None) -> list[int]:
    """Live pids of the record's group that are ours: the recorded leader, or any process of
    the group carrying the record's marker."""
    wanted = marker or str(record_path(Path(record.log_path).parent, record.kind))
    members = [record.pid] if record.started >= 0 and alive(record) else []
    for pid, found in _marked(Path(wanted).parent.parent):
        stat = _stat(pid)
        if found == wanted and stat is not None and stat[0] != "Z" and int(stat[2]) == record.pid:
            members.append(pid)
    return sorted(set(members))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)

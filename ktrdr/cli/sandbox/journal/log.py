"""The journal: one JSON line per action that changed something, appended to
`$KTRDR_HOME/sandbox/journal.jsonl` (who, when, which instance, what, how it ended).

Writing: one `os.write` of the whole line with O_APPEND, under a `filelock` on the sidecar
`journal.jsonl.lock`, then fsync; a line left torn by a crash is closed off (a newline first)
so the next record starts on its own line. Nothing ever rewrites the file.
Reading: every line is parsed on its own; a corrupt one is counted and skipped, a torn last
line is reported apart, and the reader goes on.

Only the standard library and `filelock` (imported when writing); no click, no printing.
journal/entry.py decides what is recorded and builds the records.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.home.directory import ktrdr_home

VERSION = 1
LOCK_WAIT_SECONDS = 10.0  # a stuck lock costs a record, never the command
RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def journal_path() -> Path:
    return ktrdr_home() / "sandbox" / "journal.jsonl"


@dataclass(frozen=True)
class Record:
    """One action: `args` is the argv after the command name (CLI) or the tool's arguments
    (MCP), redacted and cut; `result` is "ok" or the one-line error; `instance` may be None
    (prune, doctor, or a command refused before it knew its instance)."""

    time: str
    actor: str
    instance: str | None
    command: str
    args: list[str] | dict[str, Any]
    result: str
    exit_code: int
    duration_s: float = 0.0
    pid: int = field(default_factory=os.getpid)
    v: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def when(self) -> datetime:
        return parse_time(self.time)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_time(text: str) -> datetime:
    """An ISO time; a naive one counts as UTC (the journal writes UTC)."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def append(record: Record, path: Path | None = None) -> None:
    """Append `record` as one line. OSError (or filelock's Timeout) when it cannot: the caller
    warns and carries on, the command it records is not affected."""
    from filelock import FileLock  # here: reading the journal (and `--help`) takes no lock

    target = path or journal_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record.to_json(), separators=(",", ":"), default=str) + "\n").encode()
    with FileLock(str(target) + ".lock", timeout=LOCK_WAIT_SECONDS):
        fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if not _ends_with_newline(fd):
                line = b"\n" + line  # close off a line a crash left torn
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {target}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


@dataclass(frozen=True)
class Reading:
    """What a read found: the good records, the numbers of the lines it could not parse, and
    whether the last line was cut short (a crash mid-write)."""

    records: list[Record]
    corrupt_lines: list[int]
    torn_tail: bool = False

    def problem(self) -> str | None:
        """One line for stderr when something was skipped, else None."""
        parts = []
        if self.corrupt_lines:
            shown = ", ".join(map(str, self.corrupt_lines[:5]))
            more = "…" if len(self.corrupt_lines) > 5 else ""
            parts.append(f"{len(self.corrupt_lines)} corrupt line(s) skipped ({shown}{more})")
        if self.torn_tail:
            parts.append("the last line is cut short (a crash while writing) and was skipped")
        return "; ".join(parts) or None


def read(path: Path | None = None) -> Reading:
    """Every record of the journal, oldest first; a missing file is an empty journal. Never
    raises for what is in the file; OSError when it cannot be read at all."""
    target = path or journal_path()
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return Reading([], [])
    lines = data.split(b"\n")
    torn_candidate = lines.pop() if lines else b""  # the part after the last newline
    records: list[Record] = []
    corrupt: list[int] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = parse_line(raw)
        if record is None:
            corrupt.append(number)
        else:
            records.append(record)
    torn = False
    if torn_candidate.strip():
        record = parse_line(torn_candidate)
        torn = record is None
        if record is not None:
            records.append(record)
    return Reading(records, corrupt, torn)


def parse_line(raw: bytes) -> Record | None:
    """The record on one line, or None when it is not one (bad JSON, missing or mistyped
    fields, another version)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        return None
    try:
        record = Record(
            time=_typed(data, "time", str),
            actor=_typed(data, "actor", str),
            instance=_typed(data, "instance", (str, type(None))),
            command=_typed(data, "command", str),
            args=_typed(data, "args", (list, dict)),
            result=_typed(data, "result", str),
            exit_code=_typed(data, "exit_code", int),
            duration_s=float(_typed(data, "duration_s", (int, float))),
            pid=_typed(data, "pid", int),
        )
        record.when  # noqa: B018  # a time that does not parse makes the line corrupt
    except (KeyError, TypeError, ValueError):
        return None
    return record


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise TypeError(key)
    return value


def select(
    records: list[Record], *, instances: set[str] | None = None, since: datetime | None = None
) -> list[Record]:
    """The records of `instances` (None: all) at or after `since` (None: from the start)."""
    return [
        r
        for r in records
        if (instances is None or r.instance in instances) and (since is None or r.when >= since)
    ]


def parse_since(text: str, *, now: datetime) -> datetime:
    """`--since`: a relative age (`90s`, `30m`, `2h`, `3d`, `1w`) back from `now`, or an ISO
    date or date-time (naive = UTC). ValueError with the reason otherwise."""
    match = RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])
    try:
        return parse_time(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an age (30m, 2h, 3d, 1w) nor an ISO date or time "
            "(2024-05-01, 2024-05-01T12:00)"
        ) from None

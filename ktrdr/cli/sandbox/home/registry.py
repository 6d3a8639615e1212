"""The instance registry: $KTRDR_HOME/sandbox/instances.json.

Every read-modify-write holds a `filelock` on the sidecar `instances.json.lock` (never the JSON
itself: `os.replace` swaps its inode) and re-reads inside the lock. Writes go through
atomic.write_atomic (temp file in the same directory, fsync, rename, directory fsync). A
corrupt file or an unknown version is an error naming the file; it is never rewritten or read as
empty. Ports are not stored: they derive from the slot (slots/ports.py).

Entry states: `ready`; `creating` (a slot claimed by a running `create`, with its pid — see
provision/claims.py for the claim protocol); `destroying` (teardown started; the slot stays claimed
until the containers and volumes are confirmed gone).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.atomic import TempFileError, write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import ktrdr_home
from ktrdr.cli.sandbox.slots.ports import LAST_SLOT, MAIN_SLOT

VERSION = 1
DEFAULT_LOCK_TIMEOUT = 30.0
MAX_CLAIM_AGE_SECONDS = 3600  # far beyond the git timeouts a create can spend
Kind = Literal["worktree", "clone"]
State = Literal["ready", "creating", "destroying"]


@dataclass
class Entry:
    instance_id: str
    slot: int
    path: str
    kind: Kind
    branch: str | None
    created_at: str
    state: State = "ready"
    pid: int | None = None  # the creating or destroying process, while in those states
    name: str | None = None  # the NAME given to `create`
    repo: str | None = None  # the checkout `create` ran in (to prune worktrees later)
    context: str | None = None  # the Docker context it lives on (None: the default engine)
    forward: int | None = None  # a remote instance's block of local forward ports (slots/ports.py)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def root(self) -> Path:
        return Path(self.path)

    def is_dead_claim(self) -> bool:
        """A `creating` claim whose process is gone (crashed or killed mid-create), or older
        than any create can take (its pid may have been reused by an unrelated process)."""
        if self.state != "creating":
            return False
        return not pid_alive(self.pid) or _age_seconds(self.created_at) > MAX_CLAIM_AGE_SECONDS


def _age_seconds(iso: str) -> float:
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet still answers kill(pid, 0) (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain ") ".
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z"


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def registry_path() -> Path:
    return ktrdr_home() / "sandbox" / "instances.json"


def load(path: Path | None = None) -> dict[str, Entry]:
    """The registered instances, read without locking (writes are atomic renames)."""
    path = path or registry_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SandboxError(
            f"cannot read registry {path}: {e.strerror or e}; check that it is a readable file"
        ) from e
    return _parse(raw, path)


FIX_HINT = "fix or move the file aside (it was left untouched)"
_REQUIRED = ("instance_id", "slot", "path", "kind", "branch", "created_at")
_FIELDS = frozenset(f.name for f in fields(Entry))


class _Invalid(ValueError):
    """One thing wrong in the registry file, worded for the user (no Python internals)."""


def _parse(raw: bytes, path: Path) -> dict[str, Entry]:
    try:
        return _parse_data(raw)
    except _Invalid as e:
        raise SandboxError(f"registry {path} is corrupt ({e}); {FIX_HINT}") from e
    except _UnknownVersion as e:
        raise SandboxError(
            f"registry {path} has unknown version {e.version} (this ktrdr reads version "
            f"{VERSION}); upgrade ktrdr or {FIX_HINT}"
        ) from e


class _UnknownVersion(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def _parse_data(raw: bytes) -> dict[str, Entry]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Invalid(f"not UTF-8 text: byte {e.start} is {raw[e.start]:#04x}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        # json's messages may end in "at" ("Unterminated string starting at"): one "at" only.
        message = e.msg.removesuffix(" at")
        raise _Invalid(f"not valid JSON: {message} at line {e.lineno} column {e.colno}") from e
    if not isinstance(data, dict) or not isinstance(data.get("instances"), dict):
        raise _Invalid("no 'instances' object")
    version = data.get("version")
    # bool is an int subclass and True == 1: only a real integer is a version.
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Invalid(f"version must be the integer {VERSION}, got {_shown(version)}")
    if version != VERSION:
        raise _UnknownVersion(version)
    entries: dict[str, Entry] = {}
    for key, value in data["instances"].items():
        try:
            entries[key] = _entry(key, value)
        except _Invalid as e:
            raise _Invalid(f"entry {key!r}: {e}") from e
    return entries


def _entry(key: str, value: object) -> Entry:
    """An Entry from one JSON object, every field checked: code downstream trusts the types
    (a string pid once crashed `list`, `doctor` and `prune`; `true` was read as slot 1)."""
    if not isinstance(value, dict):
        raise _Invalid(f"must be an object, got {_shown(value)}")
    missing = [name for name in _REQUIRED if name not in value]
    if missing:
        raise _Invalid(f"missing {', '.join(repr(m) for m in missing)}")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise _Invalid(f"unknown field {', '.join(repr(u) for u in unknown)}")
    if value["instance_id"] != key:
        raise _Invalid(
            f"instance_id must equal its key {key!r}, got {_shown(value['instance_id'])}"
        )
    slot = value["slot"]
    if not _is_int(slot) or not MAIN_SLOT <= slot <= LAST_SLOT:
        raise _Invalid(f"slot must be an integer {MAIN_SLOT}..{LAST_SLOT}, got {_shown(slot)}")
    path = value["path"]
    if not isinstance(path, str) or not Path(path).is_absolute():
        raise _Invalid(f"path must be an absolute path, got {_shown(path)}")
    _check_optional_fields(value)
    return Entry(**value)


def _check_optional_fields(value: dict[str, Any]) -> None:
    for name, allowed in (("kind", get_args(Kind)), ("state", get_args(State))):
        if name in value and value[name] not in allowed:
            choices = ", ".join(f'"{a}"' for a in allowed)
            raise _Invalid(f"{name} must be one of {choices}, got {_shown(value[name])}")
    if not isinstance(value["created_at"], str):
        raise _Invalid(f"created_at must be a string, got {_shown(value['created_at'])}")
    for name in ("branch", "name", "repo", "context"):
        if value.get(name) is not None and not isinstance(value[name], str):
            raise _Invalid(f"{name} must be a string or null, got {_shown(value[name])}")
    for name in ("pid", "forward"):
        if value.get(name) is not None and not _is_int(value[name]):
            raise _Invalid(f"{name} must be an integer or null, got {_shown(value[name])}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """A value as it appears in the file (JSON), so `"1"` and `1` are told apart."""
    return json.dumps(value)[:60]


def _write(path: Path, entries: dict[str, Entry]) -> None:
    data = {"version": VERSION, "instances": {k: e.to_json() for k, e in sorted(entries.items())}}
    try:
        write_atomic(path, json.dumps(data, indent=2) + "\n")
    except TempFileError as e:
        raise SandboxError(
            f"cannot write registry {path}: no temp file in {path.parent} ({e.strerror or e}); "
            "check that the directory is writable and the disk not full"
        ) from e
    except OSError as e:
        raise SandboxError(
            f"cannot write registry {path} ({e.strerror or e}); the old file is unchanged: "
            "check the disk and the permissions of its directory, then retry"
        ) from e


def lock_timeout() -> float:

    return settings.seconds("KTRDR_REGISTRY_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)


@contextmanager
def transaction(path: Path | None = None) -> Iterator[dict[str, Entry]]:
    """Lock, load, yield the entries for in-place changes, write them back if they changed."""
    from filelock import FileLock, Timeout  # here: `list` only reads, and reads take no lock

    path = path or registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SandboxError(
            f"cannot create {path.parent}: {e.strerror or e}; check that it is (or can be) a "
            "writable directory, or set KTRDR_HOME elsewhere"
        ) from e
    lock_path = path.with_name(path.name + ".lock")
    timeout = lock_timeout()
    lock = FileLock(str(lock_path), timeout=timeout)
    # Acquired apart from the body so that an OSError raised by the caller's code inside the
    # transaction is not mistaken for a lock problem.
    try:
        lock.acquire()
    except Timeout as e:
        raise SandboxError(
            f"registry lock {lock_path} still held after {timeout:g}s: another ktrdr sandbox "
            "command is running (or hung); retry, or raise KTRDR_REGISTRY_LOCK_TIMEOUT"
        ) from e
    except OSError as e:  # e.g. the lock path is a directory, or not writable
        raise SandboxError(
            f"cannot lock the registry: {lock_path} is unusable ({e.strerror or e}); remove it "
            "if it is not a regular file, or check its permissions"
        ) from e
    try:
        entries = load(path)
        before = {k: e.to_json() for k, e in entries.items()}
        yield entries
        if {k: e.to_json() for k, e in entries.items()} != before:
            _write(path, entries)
    finally:
        lock.release()

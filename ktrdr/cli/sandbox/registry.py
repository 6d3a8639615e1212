"""The instance registry: $KTRDR_HOME/sandbox/instances.json.

Every read-modify-write holds a `filelock` on the sidecar `instances.json.lock` (never the JSON
itself: `os.replace` swaps its inode) and re-reads inside the lock. Writes go to a temp file in
the same directory, are fsynced, renamed over the old file, and the directory is fsynced. A
corrupt file or an unknown version is an error naming the file; it is never rewritten or read as
empty. Ports are not stored: they derive from the slot (ports.py).

Entry states: `ready`; `creating` (a slot claimed by a running `create`, with its pid — see
instances.py for the claim protocol); `destroying` (teardown started; the slot stays claimed
until the containers and volumes are confirmed gone).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.home import ktrdr_home
from ktrdr.cli.sandbox.ports import LAST_SLOT

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
    pid: int | None = None  # the creating process, while state is "creating"
    name: str | None = None  # the NAME given to `create`
    repo: str | None = None  # the checkout `create` ran in (to prune worktrees later)

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
    return True


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
        raise SandboxError(f"cannot read registry {path}: {e.strerror or e}") from e
    return _parse(raw, path)


def _parse(raw: bytes, path: Path) -> dict[str, Entry]:
    fix = "fix or move the file aside (it was left untouched)"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SandboxError(f"registry {path} is corrupt ({e}); {fix}") from e
    if not isinstance(data, dict) or not isinstance(data.get("instances"), dict):
        raise SandboxError(f"registry {path} is corrupt (no 'instances' object); {fix}")
    if data.get("version") != VERSION:
        raise SandboxError(
            f"registry {path} has unknown version {data.get('version')!r} (this ktrdr reads "
            f"version {VERSION}); upgrade ktrdr or {fix}"
        )
    entries: dict[str, Entry] = {}
    for key, value in data["instances"].items():
        try:
            entry = Entry(**value)
            _check(entry, key)
        except TypeError as e:
            raise SandboxError(f"registry {path} is corrupt (entry {key!r}: {e}); {fix}") from e
        entries[key] = entry
    return entries


def _check(entry: Entry, key: str) -> None:
    if entry.instance_id != key:
        raise TypeError("instance_id does not match its key")
    if not isinstance(entry.slot, int) or not 0 <= entry.slot <= LAST_SLOT:
        raise TypeError(f"slot {entry.slot!r} is not 0..{LAST_SLOT}")
    if entry.kind not in get_args(Kind) or entry.state not in get_args(State):
        raise TypeError(f"unknown kind {entry.kind!r} or state {entry.state!r}")


def _write(path: Path, entries: dict[str, Entry]) -> None:
    data = {"version": VERSION, "instances": {k: e.to_json() for k, e in sorted(entries.items())}}
    payload = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    import tempfile  # only writers need it; `list` only reads

    fd, tmp = tempfile.mkstemp(prefix=".instances.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def lock_timeout() -> float:
    value = os.environ.get("KTRDR_REGISTRY_LOCK_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


@contextmanager
def transaction(path: Path | None = None) -> Iterator[dict[str, Entry]]:
    """Lock, load, yield the entries for in-place changes, write them back if they changed."""
    from filelock import FileLock, Timeout

    path = path or registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SandboxError(f"cannot create {path.parent}: {e.strerror or e}") from e
    lock_path = path.with_name(path.name + ".lock")
    timeout = lock_timeout()
    try:
        with FileLock(str(lock_path), timeout=timeout):
            entries = load(path)
            before = {k: e.to_json() for k, e in entries.items()}
            yield entries
            if {k: e.to_json() for k, e in entries.items()} != before:
                _write(path, entries)
    except Timeout as e:
        raise SandboxError(
            f"registry lock {lock_path} still held after {timeout:g}s: another ktrdr sandbox "
            "command is running (or hung); retry, or raise KTRDR_REGISTRY_LOCK_TIMEOUT"
        ) from e

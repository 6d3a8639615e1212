"""One writer per instance: an exclusive lock around `up`, `down`, `pause`, `resume`, `destroy`
and `init`.

The lock is a `filelock` on `$KTRDR_HOME/sandbox/locks/<instance id>.lock`; the kernel drops it
when its process dies, so a killed command never leaves it held. Beside it the holder writes
`<instance id>.holder` (pid, command, since) so that a second command can say whom it waits for.

Both files go with their instance (`remove_lock_files`, after destroy and prune): only while
nobody holds the lock and the id is not registered again. A command that waited on the removed
file holds a lock nobody else can see, so every holder checks, once it has the lock, that the
file it locked is still the one at the path, and otherwise locks again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import ktrdr_home

DEFAULT_WAIT_SECONDS = 1800.0  # longer than any up (gate 300 s + a build) takes
NOTIFY_EVERY_SECONDS = 5.0


def _lock_dir() -> Path:
    return ktrdr_home() / "sandbox" / "locks"


def wait_limit() -> float:
    return settings.seconds("KTRDR_INSTANCE_LOCK_TIMEOUT", DEFAULT_WAIT_SECONDS)


def holder(instance_id: str) -> str:
    """Who holds the instance now, in words ("process 812 (`ktrdr sandbox up`, for 12 s)")."""
    try:
        data = json.loads((_lock_dir() / f"{instance_id}.holder").read_text(encoding="utf-8"))
        since = float(data["since"])
        return f"process {int(data['pid'])} (`{data['command']}`, for {time.time() - since:.0f} s)"
    except (OSError, ValueError, KeyError, TypeError):
        return "another ktrdr command"


@contextmanager
def instance_lock(
    instance_id: str,
    *,
    command: str,
    on_wait: Callable[[str], None] = lambda message: None,
    wait: float | None = None,
) -> Iterator[None]:
    """Hold the instance's lock for the body; `on_wait` hears whom we wait for (at once, then
    every few seconds); gives up after `wait` s (KTRDR_INSTANCE_LOCK_TIMEOUT, 30 min)."""

    directory = _lock_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SandboxError(
            f"cannot create the lock directory {directory}: {e.strerror or e}; check KTRDR_HOME"
        ) from e
    lock = FileLock(str(directory / f"{instance_id}.lock"))
    limit = wait_limit() if wait is None else wait
    deadline = time.monotonic() + limit
    step = 0.0  # the first attempt does not wait, so the first notice comes at once
    while True:
        try:
            lock.acquire(timeout=min(step, max(0.0, deadline - time.monotonic())))
            if _still_at_path(lock) or _release(lock):  # else removed with its instance: again
                break
            continue
        except Timeout:
            if time.monotonic() >= deadline:
                raise SandboxError(
                    f"instance {instance_id} is busy: {holder(instance_id)} still holds it after "
                    f"{limit:g}s of waiting; retry when it is done (KTRDR_INSTANCE_LOCK_TIMEOUT "
                    "sets the wait)"
                ) from None
        except OSError as e:
            raise SandboxError(
                f"cannot lock instance {instance_id} ({directory / instance_id}.lock: "
                f"{e.strerror or e}); check the permissions of {directory}"
            ) from e
        on_wait(f"waiting for instance {instance_id}: {holder(instance_id)} is using it")
        step = NOTIFY_EVERY_SECONDS
    holder_file = directory / f"{instance_id}.holder"
    try:
        _write_holder(holder_file, command)
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def _write_holder(path: Path, command: str) -> None:
    holder_text = json.dumps({"pid": os.getpid(), "command": command, "since": time.time()})
    with contextlib.suppress(OSError):  # only a courtesy to waiters: the lock itself is held
        write_atomic(path, holder_text, mode=None)


def _release(lock: Any) -> bool:
    """Let go of a lock whose file was removed (the next acquire makes and locks a new one)."""
    lock.release()
    return False


def _still_at_path(lock: Any) -> bool:
    """Whether the file `lock` holds is the one now at its path (not removed and remade)."""
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    try:
        held, current = os.fstat(fd), os.stat(lock.lock_file)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def remove_lock_files(instance_id: str, *, still_gone: Callable[[], bool]) -> bool:
    """Remove `<id>.lock` and `<id>.holder` of an instance that is gone, holding the lock while
    doing it and only when `still_gone()` says (inside it) that the id is not registered again.
    False, leaving both, when another process holds the lock now."""

    path = _lock_dir() / f"{instance_id}.lock"
    if not path.exists():
        (_lock_dir() / f"{instance_id}.holder").unlink(missing_ok=True)
        return True
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return False
    try:
        if not _still_at_path(lock) or not still_gone():
            return False
        (_lock_dir() / f"{instance_id}.holder").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return True
    finally:
        lock.release()

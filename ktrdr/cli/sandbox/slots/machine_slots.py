"""Slots are per machine, registries per home: how homes sharing one engine keep apart.

A home's registry only knows its own instances, and a stack that was created but never started
holds no port, so neither the registry nor the port probe stops another home from taking the same
slot before the first `up`. Two things close that gap:

- one machine-wide allocation lock (a file in the system temp directory) held while a home reads
  the busy slots and writes its claim, so two homes never allocate at the same moment;
- a claim marker on the engine, the one place every home already reads: an empty volume carrying
  the instance's owner and slot labels, made at create/init. Other homes see its slot as taken
  (`ownership.slots_of_other_homes`); `destroy` and doctor's orphan fix remove it with the
  instance's other labelled resources, a rolled-back or reaped create removes it
  (`ownership.mark_slot` / `ownership.unmark_slot`).

Both are best effort: without an engine the marker is skipped (the port probe still guards
running stacks), and a temp directory this user cannot write means no machine-wide lock.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.errors import SandboxError

LOCK_NAME = "ktrdr-sandbox-slots.lock"
MARKER_SUFFIX = "_slot-claim"
LOCK_TIMEOUT = 120.0  # held for a port probe and one registry write: seconds, not minutes


def lock_path() -> Path:
    return Path(settings.get("KTRDR_SLOTS_LOCK") or Path(tempfile.gettempdir()) / LOCK_NAME)


@contextmanager
def allocation_lock() -> Iterator[None]:
    """Serialize slot allocation across every KTRDR_HOME on this machine."""

    path = lock_path()
    # 0o666: homes of other users on this machine allocate from the same slots.
    lock = FileLock(str(path), timeout=LOCK_TIMEOUT, mode=0o666)
    try:
        lock.acquire()
    except Timeout:
        raise SandboxError(
            f"another home has held the slot allocation lock {path} for {LOCK_TIMEOUT:.0f}s; "
            "retry, or remove the file if no ktrdr command is running"
        ) from None
    except PermissionError:
        yield  # someone else's lock file we may not open: allocate without it
        return
    try:
        yield
    finally:
        lock.release()


def marker_name(project: str) -> str:
    return f"{project}{MARKER_SUFFIX}"

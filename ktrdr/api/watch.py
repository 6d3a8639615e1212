"""Noticing a source change for hot reload: Linux inotify on a directory tree, read by a thread
that blocks until something happens, so an unchanged tree costs no wake-up at all (watchfiles,
behind `uvicorn --reload`, looks 20 times a second).

Only `.py` files count, as with `uvicorn --reload`: written, created, deleted, renamed or
touched. Directories created later are watched too; hidden ones and `__pycache__` are not.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import select
import struct
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("uvicorn.error")

# <sys/inotify.h>
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_CLOEXEC = 0o2000000
WATCHED = IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
# After the first change, events this close together belong to the same edit (an editor's save
# is several; a `git checkout` many): they make one reload, not several.
SETTLE_S = 0.05
MAX_NAMED = 3  # changed files named in the log line


class SourceWatcher:
    """Sets `changed`, then calls `on_change` (from its own thread), at the first change to a
    `.py` file under `root`; `changes` names the files (relative to `root`)."""

    def __init__(self, root: Path, *, on_change: Callable[[], None] | None = None) -> None:
        self.root = root
        self.on_change = on_change
        self.changed = threading.Event()
        self.changes: list[str] = []
        self._fd = -1
        self._dirs: dict[int, Path] = {}

    def start(self) -> None:
        """Watch the tree from now on; OSError if inotify is not available."""
        fd = _libc().inotify_init1(IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd = fd
        self._watch_tree(self.root)
        threading.Thread(target=self._run, name="ktrdr-source-watch", daemon=True).start()

    def wait(self) -> None:
        self.changed.wait()

    def _watch_tree(self, top: Path) -> None:
        for directory, subdirs, _ in os.walk(top):
            subdirs[:] = [d for d in subdirs if _watched_dir(d)]
            path = os.fsencode(directory)
            wd = _libc().inotify_add_watch(self._fd, path, WATCHED | IN_ONLYDIR)
            if wd >= 0:
                self._dirs[wd] = Path(directory)
            elif ctypes.get_errno() not in (errno.ENOENT, errno.ENOTDIR):  # gone again: fine
                log.warning("cannot watch %s: %s", directory, os.strerror(ctypes.get_errno()))

    def _run(self) -> None:
        try:
            while not self._read_events(timeout=None):
                pass
            while self._read_events(timeout=SETTLE_S) is not None:
                pass
        except OSError as e:  # the descriptor broke: reload rather than miss edits silently
            log.warning("watching %s failed (%s); reloading", self.root, e)
        finally:
            os.close(self._fd)
        self.changed.set()
        if self.on_change is not None:
            self.on_change()

    def _read_events(self, *, timeout: float | None) -> bool | None:
        """Read one batch of events, waiting up to `timeout` (None: for ever): whether one of
        them is a change, or None if none came in time."""
        if timeout is not None and not select.select([self._fd], [], [], timeout)[0]:
            return None
        data = os.read(self._fd, 65536)
        changed = False
        offset = 0
        while offset < len(data):
            wd, mask, _, size = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            offset = start + size
            name = os.fsdecode(data[start:offset].rstrip(b"\0"))
            changed = self._handle(wd, mask, name) or changed
        return changed

    def _handle(self, wd: int, mask: int, name: str) -> bool:
        if mask & IN_Q_OVERFLOW:
            return self._note("(too many events to name)")
        if mask & IN_IGNORED:
            self._dirs.pop(wd, None)
            return False
        directory = self._dirs.get(wd)
        if directory is None or not name:
            return False
        path = directory / name
        if mask & IN_ISDIR:
            if not _watched_dir(name):
                return False
            if mask & (IN_CREATE | IN_MOVED_TO):
                self._watch_tree(path)
                return _has_python(path) and self._note(path)
            return bool(mask & (IN_DELETE | IN_MOVED_FROM)) and self._note(path)
        return name.endswith(".py") and not name.startswith(".") and self._note(path)

    def _note(self, path: Path | str) -> bool:
        if len(self.changes) < MAX_NAMED:
            name = os.path.relpath(path, self.root) if isinstance(path, Path) else path
            if name not in self.changes:
                self.changes.append(name)
        return True


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        raise OSError(errno.ENOSYS, "no inotify here (Linux only)")
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


def _watched_dir(name: str) -> bool:
    return not name.startswith(".") and name != "__pycache__"


def _has_python(directory: Path) -> bool:
    return any(name.endswith(".py") for _, _, files in os.walk(directory) for name in files)

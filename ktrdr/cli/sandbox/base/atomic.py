"""The one way state files are written: a temp file in the same directory, fsynced, then
renamed over the target (and the directory fsynced), so a reader sees the old file or the new
one, never half of either. Imported by `list`'s modules: standard library only, no tempfile."""

from __future__ import annotations

import os
from pathlib import Path


class TempFileError(OSError):
    """The temp file could not even be created: the target was not touched."""


def write_atomic(
    path: Path, data: str | bytes, *, mode: int | None = 0o600, replace: bool = True
) -> bool:
    """Write `data` (str as UTF-8) to `path` atomically; the temp file is removed on any
    failure. `mode`: the file's exact permissions (None: the umask's default, as `open`).
    `replace=False` keeps an existing file (the first writer wins: os.link instead of
    os.replace) and returns False when there was one. OSError on failure (TempFileError when
    no temp file could be made)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    except OSError as e:
        raise TempFileError(e.errno, e.strerror, e.filename) from e
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        written = _install(tmp, path, replace=replace)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_directory(path.parent)
    return written


def _install(tmp: Path, path: Path, *, replace: bool) -> bool:
    if replace:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # fails when the file exists
    except FileExistsError:
        return False
    return True


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; best effort (some filesystems refuse a directory
    fsync, and the data is already safe in the file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Unpack a tar stream into directories, one per volume key: the program that runs inside a
helper container on the engine (as `python -c <this file's source> SPEC`, stdin the tar), and,
in this process, for results streamed back. Standard library only, Python 3.11.0+ (the app
image's Python): it must not import anything of ktrdr.

SPEC is JSON: {"root": "/dst", "keys": {KEY: {"mode": M, "marker": bool}}}; member names start
with their KEY. Modes: `mirror` (afterwards the directory holds exactly the stream's files),
`merge` (nothing is deleted), `clear` (emptied first). A file whose size and mtime already match
is left alone, so an unchanged tree causes no write (and no reload in the containers); a changed
one is written to a temp file and renamed over, so a reader never sees half of it. Absolute
names, `..`, links and devices are refused or skipped. With `marker`, a `.ktrdr-push` file
records a completed unpack (push_shared checks it). `--check` prints which keys have one.
Prints a JSON summary.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath
from typing import IO, Any

MARKER_FILE = ".ktrdr-push"


def unpack(stream: IO[bytes], spec: dict[str, Any]) -> dict[str, int]:
    root = Path(spec["root"])
    keys: dict[str, dict[str, Any]] = spec["keys"]
    for key, options in keys.items():
        (root / key).mkdir(parents=True, exist_ok=True)
        if options.get("mode") == "clear":
            _empty(root / key)
    counts = {"written": 0, "unchanged": 0, "directories": 0, "skipped": 0, "removed": 0}
    seen: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            relative = _checked(member.name, keys)
            if relative is None or not (member.isfile() or member.isdir()):
                counts["skipped"] += 1
                continue
            parts = PurePosixPath(relative).parts
            seen.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            counts[_apply(archive, member, root / relative)] += 1
    for key, options in keys.items():
        if options.get("mode") == "mirror":
            counts["removed"] += _prune(root, key, seen)
        if options.get("marker"):
            stamp = {"at": time.time(), "files": counts["written"] + counts["unchanged"]}
            (root / key / MARKER_FILE).write_text(json.dumps(stamp) + "\n")
    return counts


def check(spec: dict[str, Any]) -> dict[str, bool]:
    root = Path(spec["root"])
    return {key: (root / key / MARKER_FILE).is_file() for key in spec["keys"]}


def _checked(name: str, keys: dict[str, Any]) -> str | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in keys:
        return None
    return path.as_posix()


def _apply(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    if member.isdir():
        if target.exists() and not target.is_dir():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, 0o755)
        return "directories"
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    try:
        current = target.lstat()
        if current.st_size == member.size and int(current.st_mtime) == int(member.mtime):
            return "unchanged"
    except OSError:
        pass
    source = archive.extractfile(member)
    if source is None:
        return "skipped"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.ktrdr-tmp")
    with open(temporary, "wb") as out:
        shutil.copyfileobj(source, out)
    os.chmod(temporary, 0o755 if member.mode & 0o111 else 0o644)
    os.utime(temporary, (member.mtime, member.mtime))
    os.replace(temporary, target)
    return "written"


def _prune(root: Path, key: str, seen: set[str]) -> int:
    removed = 0
    for directory, dirs, files in os.walk(root / key, topdown=False):
        for name in [*files, *dirs]:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if relative in seen or relative == f"{key}/{MARKER_FILE}":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
    return removed


def _empty(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        print(json.dumps(check(json.loads(argv[1]))))
        return 0
    print(json.dumps(unpack(sys.stdin.buffer, json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

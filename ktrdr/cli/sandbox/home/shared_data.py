"""Shared data: $KTRDR_HOME/shared/{data,strategies,models}, mounted into every instance.

`init_shared` fills it from the sample shipped in `ktrdr.sample_data`, or from a user's DIR.
A DIR is either *structured* (has any of data/, strategies/, models/ — copied subdir by subdir)
or *flat* (a plain folder of files: *.csv go to data/, *.yaml/*.yml to strategies/, *.json to
models/; anything else is ignored and reported). Files are hard-linked when DIR is on the same
filesystem (no extra disk for large CSV sets), else copied. A file already present with other
content is never replaced without `force`; identical files count as unchanged, so a rerun is a
no-op.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import ktrdr_home

SUBDIRS = ("data", "strategies", "models")
FLAT_SUFFIXES = {".csv": "data", ".yaml": "strategies", ".yml": "strategies", ".json": "models"}
SAMPLE_PACKAGE = "ktrdr.sample_data"


def shared_root() -> Path:
    return ktrdr_home() / "shared"


@dataclass
class InitSharedResult:
    root: Path
    source: str
    created_dirs: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "source": self.source,
            "created_dirs": self.created_dirs,
            "installed": self.installed,
            "linked": self.linked,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "overwritten": self.overwritten,
            "ignored": self.ignored,
            "broken_links": self.broken_links,
        }


@dataclass(frozen=True)
class SharedStatus:
    root: Path
    exists: bool
    missing_dirs: list[str]
    data_files: int
    strategy_files: int


def shared_status(root: Path | None = None) -> SharedStatus:
    root = root or shared_root()
    missing = [name for name in SUBDIRS if not (root / name).is_dir()]

    def count(name: str) -> int:
        directory = root / name
        return sum(1 for p in directory.iterdir() if p.is_file()) if directory.is_dir() else 0

    return SharedStatus(root, root.is_dir(), missing, count("data"), count("strategies"))


def init_shared(
    *, source: Path | None = None, force: bool = False, root: Path | None = None
) -> InitSharedResult:
    """Create the shared dirs and install the sample (or `source`); see the module docstring."""
    root = root or shared_root()
    result = InitSharedResult(root=root, source=str(source) if source else SAMPLE_PACKAGE)
    _make_dirs(root, result)
    if source is None:
        for relative, entry in _sample_files():
            _install_traversable(entry, root / relative, relative, force=force, result=result)
        return result
    source = source.expanduser()
    if not source.is_dir():
        raise SandboxError(f"--from {source}: not a directory; pass a folder of CSVs or data/")
    if source.resolve() == root.resolve():
        raise SandboxError(f"--from {source} is the shared dir itself; pass another folder")
    for relative, path in _source_files(source, result):
        _install_path(path, root / relative, relative, force=force, result=result)
    return result


def _make_dirs(root: Path, result: InitSharedResult) -> None:
    for name in SUBDIRS:
        directory = root / name
        if directory.exists() and not directory.is_dir():
            raise SandboxError(f"{directory} exists and is not a directory; move it away, retry")
        if not directory.is_dir():
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SandboxError(
                    f"cannot create {directory}: {e.strerror or e}; check KTRDR_HOME permissions"
                ) from e
            result.created_dirs.append(name)


def _sample_files() -> Iterator[tuple[str, Traversable]]:
    try:
        package = resources.files(SAMPLE_PACKAGE)
    except ModuleNotFoundError as e:
        raise SandboxError(
            f"the packaged sample ({SAMPLE_PACKAGE}) is missing; reinstall ktrdr or use --from DIR"
        ) from e
    for name in ("data", "strategies"):
        directory = package / name
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir(), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith((".", "_")):
                yield f"{name}/{entry.name}", entry


def _source_files(source: Path, result: InitSharedResult) -> Iterator[tuple[str, Path]]:
    """Symlinks to files are followed everywhere (data dirs often link into a bigger store);
    broken ones are reported."""
    structured = [name for name in SUBDIRS if (source / name).is_dir()]
    if structured:
        for name in structured:
            for path in sorted((source / name).rglob("*")):
                relative = f"{name}/{path.relative_to(source / name).as_posix()}"
                if path.is_file():
                    yield relative, path
                elif path.is_symlink() and not path.exists():
                    result.broken_links.append(relative)
        return
    for path in sorted(source.iterdir()):
        target = FLAT_SUFFIXES.get(path.suffix.lower())
        if path.is_symlink() and not path.exists():
            result.broken_links.append(path.name)
        elif path.is_file() and target is not None:
            yield f"{target}/{path.name}", path
        else:
            result.ignored.append(path.name)


def _prepare(
    destination: Path, relative: str, same: bool, *, force: bool, result: InitSharedResult
) -> bool:
    """True when the file should be written now; records unchanged/skipped otherwise."""
    if not destination.exists() and not destination.is_symlink():
        return True
    if same:
        result.unchanged.append(relative)
        return False
    if not force:
        result.skipped.append(relative)
        return False
    destination.unlink()
    result.overwritten.append(relative)
    return True


def _install_traversable(
    entry: Traversable, destination: Path, relative: str, *, force: bool, result: InitSharedResult
) -> None:
    content = entry.read_bytes()
    same = destination.is_file() and destination.read_bytes() == content
    if not _prepare(destination, relative, same, force=force, result=result):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, destination)
    if relative not in result.overwritten:
        result.installed.append(relative)


def _install_path(
    path: Path, destination: Path, relative: str, *, force: bool, result: InitSharedResult
) -> None:
    same = destination.is_file() and filecmp.cmp(path, destination, shallow=False)
    if not _prepare(destination, relative, same, force=force, result=result):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The target, not the link: a symlink would dangle inside the containers.
        os.link(path.resolve(), destination)
        result.linked.append(relative)
    except OSError:  # other filesystem, or links not allowed: a plain copy
        # Via a temp name: a copy cut short by a kill must not pass for the user's file on the
        # rerun (which keeps files that differ).
        temporary = destination.with_name(f".{destination.name}.tmp")
        try:
            shutil.copy2(path, temporary)
            os.replace(temporary, destination)
        except OSError as e:
            temporary.unlink(missing_ok=True)
            raise SandboxError(f"cannot copy {path} to {destination}: {e.strerror or e}") from e
    if relative not in result.overwritten:
        result.installed.append(relative)

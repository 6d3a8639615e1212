"""Filling named volumes on an engine that cannot see this machine's disk: a tar stream made
here (`tarfile`, junk left out) piped into a short-lived helper container that unpacks it
(remote/volume_unpack.py, run by the image's Python), and the reverse for results. Every helper
container is labelled (owner, and instance where the volumes are an instance's), so a run
killed half-way is found and removed by label like the stack's own containers.

Every `docker` command goes to the engine passed in (the instance's).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.remote import volume_unpack

JUNK_DIRS = frozenset(
    {"__pycache__", ".git", ".sandbox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv"}
)
JUNK_SUFFIXES = (".pyc", ".pyo")
PUSH_TIMEOUT = 3600.0  # the shared data can be large; an instance's sources take seconds
QUERY_TIMEOUT = 60.0
ROLE_LABEL = "ktrdr.role"
MOUNT_ROOT = "/dst"


@dataclass(frozen=True)
class PushReport:
    volumes: list[str]
    files: int
    bytes: int
    seconds: float
    written: int = 0
    unchanged: int = 0
    removed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "volumes": self.volumes,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "written": self.written,
            "unchanged": self.unchanged,
            "removed": self.removed,
        }


def skipped(name: str, *, directory: bool) -> bool:
    """Junk that never goes to an engine (caches, VCS data, the instance's own state)."""
    return name in JUNK_DIRS if directory else name.endswith(JUNK_SUFFIXES)


def write_tar(out: IO[bytes], sources: Mapping[str, Path]) -> tuple[int, int]:
    """A tar of each source directory under its key; returns (files, bytes of file data).
    Symlinks to files are followed (their content goes); links to directories and broken
    links are left out."""
    files = size = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for key, source in sources.items():
            for directory, dirs, names in os.walk(source):
                dirs[:] = sorted(d for d in dirs if not skipped(d, directory=True))
                base = Path(directory)
                relative = base.relative_to(source).as_posix()
                prefix = key if relative == "." else f"{key}/{relative}"
                archive.addfile(_info(prefix, base.stat(), directory=True))
                for name in sorted(names):
                    path = base / name
                    if skipped(name, directory=False) or not path.is_file():
                        continue
                    stat = path.stat()
                    with open(path, "rb") as handle:
                        archive.addfile(_info(f"{prefix}/{name}", stat, directory=False), handle)
                    files, size = files + 1, size + stat.st_size
    return files, size


def _info(name: str, stat: os.stat_result, *, directory: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else stat.st_size
    info.mode = stat.st_mode & 0o777
    info.mtime = int(stat.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def existing_volumes(engine: Engine, filters: Mapping[str, str]) -> set[str]:
    """Names of the volumes carrying all `filters` labels."""
    argv = engine.argv("volume", "ls", "--format", "{{.Name}}")
    for key, value in filters.items():
        argv += ["--filter", f"label={key}={value}"]
    listed = proc.run(argv, timeout=QUERY_TIMEOUT, what="docker volume ls")
    return set(listed.stdout.split())


def created_at(engine: Engine, names: Sequence[str]) -> dict[str, str]:
    """Volume name -> its creation time on the engine, for those of `names` that exist."""
    argv = engine.argv("volume", "inspect", "--format", "{{.Name}}\t{{.CreatedAt}}", *names)
    listed = proc.run(argv, timeout=QUERY_TIMEOUT, check=False, what="volume inspect")
    pairs = (line.split("\t", 1) for line in listed.stdout.splitlines() if "\t" in line)
    return {name: created for name, created in pairs}


def push(
    engine: Engine,
    sources: Mapping[str, Path],
    volumes: Mapping[str, str],
    modes: Mapping[str, dict[str, Any]],
    *,
    image: str,
    labels: Mapping[str, str],
    volume_labels: Mapping[str, Mapping[str, str]],
    what: str,
) -> PushReport:
    """Stream `sources` (key -> local dir) into `volumes` (key -> volume name) in one helper
    container; `modes` per key as volume_unpack's SPEC. Keys without a source are only
    prepared (e.g. `clear`). A missing volume is created by that run with its
    `volume_labels[key]`; `labels` go on the helper container."""
    spec = {"root": MOUNT_ROOT, "keys": {key: dict(modes.get(key, {})) for key in volumes}}
    argv = _helper_argv(
        engine,
        volumes,
        volume_labels,
        image=image,
        labels=labels,
        read_only=False,
        interactive=True,
    )
    argv += ["--entrypoint", "python", image, "-c", _unpack_source(), json.dumps(spec)]
    counted: dict[str, int] = {}

    def produce(stdin: IO[bytes]) -> None:
        counted["files"], counted["bytes"] = write_tar(stdin, sources)

    started = time.monotonic()
    result = proc.piped(argv, write=produce, timeout=PUSH_TIMEOUT, what=what)
    summary = _summary(result.stdout)
    return PushReport(
        volumes=list(volumes.values()),
        files=counted.get("files", 0),
        bytes=counted.get("bytes", 0),
        seconds=time.monotonic() - started,
        written=summary.get("written", 0),
        unchanged=summary.get("unchanged", 0),
        removed=summary.get("removed", 0),
    )


def markers(
    engine: Engine,
    volumes: Mapping[str, str],
    volume_labels: Mapping[str, Mapping[str, str]],
    *,
    image: str,
    labels: Mapping[str, str],
) -> dict[str, bool]:
    """Which volumes hold a completed push (volume_unpack's marker), in one helper container
    (a missing volume is created, empty, with its labels: it then has no marker)."""
    spec = {"root": MOUNT_ROOT, "keys": {key: {} for key in volumes}}
    argv = _helper_argv(
        engine,
        volumes,
        volume_labels,
        image=image,
        labels=labels,
        read_only=True,
        interactive=False,
    )
    argv += ["--entrypoint", "python", image, "-c", _unpack_source(), "--check", json.dumps(spec)]
    result = proc.run(argv, timeout=120, what="checking shared volumes")
    found = _summary(result.stdout)
    return {key: bool(found.get(key)) for key in volumes}


def pull(
    engine: Engine,
    volume: str,
    destination: Path,
    *,
    image: str,
    labels: Mapping[str, str],
    volume_labels: Mapping[str, str],
) -> dict[str, int]:
    """Copy a volume's content to `destination` (made to hold exactly that content); a
    missing volume is created, empty, with `volume_labels` (never left unlabelled)."""
    key = destination.name
    argv = _helper_argv(
        engine,
        {key: volume},
        {key: volume_labels},
        image=image,
        labels=labels,
        read_only=True,
        interactive=False,
    )
    argv += ["--entrypoint", "tar", image, "-c", "-C", MOUNT_ROOT, key]
    spec = {"root": str(destination.parent), "keys": {key: {"mode": "mirror"}}}
    counts: dict[str, int] = {}

    def consume(stdout: IO[bytes]) -> None:
        counts.update(volume_unpack.unpack(stdout, spec))

    proc.piped(argv, read=consume, timeout=600, what=f"copying {volume}")
    return counts


def _helper_argv(
    engine: Engine,
    volumes: Mapping[str, str],
    volume_labels: Mapping[str, Mapping[str, str]],
    *,
    image: str,
    labels: Mapping[str, str],
    read_only: bool,
    interactive: bool,
) -> list[str]:
    argv = engine.argv("run", "--rm", "--network", "none", "--pull", "never")
    argv += ["-i"] if interactive else []
    argv += _label_args({**labels, ROLE_LABEL: "volume-push"})
    for key, name in volumes.items():
        argv += ["--mount", mount_arg(name, f"{MOUNT_ROOT}/{key}", volume_labels.get(key, {}))]
        argv[-1] += ",readonly" if read_only else ""
    return argv


def mount_arg(name: str, target: str, labels: Mapping[str, str]) -> str:
    """`--mount` value for a volume; the labels apply when this run creates it. CSV, as the
    docker CLI parses it (a label value may hold a comma or a quote)."""

    fields = ["type=volume", f"src={name}", f"dst={target}"]
    fields += [f"volume-label={key}={value}" for key, value in sorted(labels.items())]
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    return line.getvalue()


def _label_args(labels: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in sorted(labels.items()):
        args += ["--label", f"{key}={value}"]
    return args


def _unpack_source() -> str:
    return Path(volume_unpack.__file__).read_text(encoding="utf-8")


def _summary(stdout: str) -> dict[str, int]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return {str(k): int(v) for k, v in data.items()}
    return {}

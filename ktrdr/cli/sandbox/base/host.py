"""Facts about the host a stack runs on: available memory, free disk, inotify limits. `up`
warns and `doctor` reports from the same numbers and the same words."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

MIB = 1024**2
GIB = 1024**3
# One idle stack takes about 230 MiB (docs/sandbox.md "What an idle instance costs"), more
# while it starts or runs jobs. Below 1 GiB available the next stack no longer fits with room to
# spare for the engine, a build and the page cache, so `up` warns (it does not refuse); doctor
# says the same. 2 GiB, doctor's earlier figure, warned on hosts with room for several stacks.
MIN_AVAILABLE_MEMORY = 1 * GIB
STACK_MEMORY_MIB = 230
MIN_FREE_DISK = 5 * GIB
# name -> (warn below, raise to): hot reload in several instances needs many watches.
INOTIFY_LIMITS = {"max_user_watches": (65536, 524288), "max_user_instances": (256, 1024)}


@dataclass(frozen=True)
class HostPaths:
    """Where host facts are read; tests pass stand-in files for /proc."""

    meminfo: Path = Path("/proc/meminfo")
    inotify_dir: Path = Path("/proc/sys/fs/inotify")


def mem_available(meminfo: Path) -> int | None:
    """MemAvailable in bytes; None when it cannot be read (not Linux, or no such line)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_warning(meminfo: Path = HostPaths.meminfo) -> str | None:
    """One line when less than MIN_AVAILABLE_MEMORY is available; None otherwise."""
    available = mem_available(meminfo)
    if available is None or available >= MIN_AVAILABLE_MEMORY:
        return None
    return (
        f"only {available // MIB} MiB of memory available (under "
        f"{MIN_AVAILABLE_MEMORY / GIB:g} GiB; an idle stack takes about {STACK_MEMORY_MIB} MiB): "
        "another stack may not fit; stop an instance with `ktrdr sandbox down NAME` first"
    )


def free_disk(path: Path) -> int:
    """Bytes free on the filesystem holding `path` (or its nearest existing parent)."""
    return shutil.disk_usage(existing_parent(path)).free


def existing_parent(path: Path) -> Path:
    """`path` itself when it exists, else its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def inotify_limit(path: Path) -> int | None:
    """The value of one /proc/sys/fs/inotify file; None when it cannot be read."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def raise_inotify_limit(path: Path, value: int) -> None:
    """Write a new limit (root only; lasts until reboot). Raises OSError."""
    path.write_text(f"{value}\n")

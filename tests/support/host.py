"""Stand-ins for the host's /proc files the doctor reads (memory, inotify limits)."""

from __future__ import annotations

from pathlib import Path

from ktrdr.cli.sandbox.base.host import HostPaths


def quiet_host(tmp_path: Path) -> HostPaths:
    """Stand-ins for /proc with comfortable values, so host warnings don't mix in."""
    (tmp_path / "proc-inotify").mkdir(exist_ok=True)
    (tmp_path / "proc-inotify" / "max_user_watches").write_text("524288\n")
    (tmp_path / "proc-inotify" / "max_user_instances").write_text("1024\n")
    (tmp_path / "meminfo").write_text("MemTotal: 25000000 kB\nMemAvailable: 20000000 kB\n")
    return HostPaths(meminfo=tmp_path / "meminfo", inotify_dir=tmp_path / "proc-inotify")

"""The stack start a hook leaves running: a detached `ktrdr sandbox up ID` in its own session,
its output in `$KTRDR_HOME/run/<id>/start.log`, recorded beside it (`start.json`) like the
other processes an instance owns (home/owned_process.py: pid, start time, marker).

Why in the background: the hook must print the worktree's path within seconds, and a first
start takes most of a minute; started at once, the stack is usually up by the time the agent
first needs it. Its output goes to a file under the home, never into the worktree (an agent
could replace a file there with a link to something else). `status` shows where the start is
(it reads the record; the creation time in it tells this instance from an earlier one of the
same id), and the agent's own `sandbox_up` waits for it (the instance lock) and then
re-runs the gate, so the agent never has to know a start was under way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.home import owned_process
from ktrdr.cli.sandbox.mcp import config as mcp_config

KIND = "start"  # overview/status.py reads the record of this kind (it sits below this package)
MODES = ("background", "on-demand")
DEFAULT_MODE = "background"
STOP_GRACE = 10.0


@dataclass(frozen=True)
class StartInfo:
    mode: str  # background | on-demand
    log: Path | None  # the start's log (background only)
    started: bool  # a start was launched by this call (False: one was already recorded)
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "log": str(self.log) if self.log else None}


def log_path(instance_id: str) -> Path:
    return owned_process.log_path(owned_process.state_dir(instance_id), KIND)


def start(instance_id: str, *, created_at: str, cwd: Path) -> StartInfo:
    """Launch `ktrdr sandbox up ID` detached, once per instance: when this instance (same id,
    same creation time) already has a start recorded, running or ended, nothing is launched."""

    directory = owned_process.state_dir(instance_id)
    current = owned_process.load(directory, KIND)
    if current is not None and current.details.get("created_at") == created_at:
        return StartInfo("background", Path(current.log_path), False, current.pid)
    record = owned_process.launch(
        [mcp_config.ktrdr_executable(), "sandbox", "up", instance_id],
        kind=KIND,
        instance_id=instance_id,
        directory=directory,
        ready=lambda: True,  # nothing to wait for: the hook returns at once
        timeout=0,
        what="the background start",
        cwd=cwd,
        details={"created_at": created_at, "started_at": _now()},
    )
    return StartInfo("background", Path(record.log_path), True, record.pid)


def stop(instance_id: str) -> bool:
    """Stop a background start still running (before its instance is destroyed: it holds the
    instance lock destroy waits for). True when one was running."""
    record = owned_process.load(owned_process.state_dir(instance_id), KIND)
    if record is None or not owned_process.alive(record):
        return False
    return owned_process.stop(record, grace=STOP_GRACE)


def forget(instance_id: str) -> None:
    """Drop the start's record and log once its instance is gone."""
    directory = owned_process.state_dir(instance_id)
    for path in (owned_process.record_path(directory, KIND), log_path(instance_id)):
        path.unlink(missing_ok=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

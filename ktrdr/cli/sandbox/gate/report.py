"""The Startability Gate's report: what it holds, and `.sandbox/gate-report.json` on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.checks import CheckResult

REPORT_DIR = ".sandbox"
REPORT_FILE = "gate-report.json"


def timestamp(moment: datetime) -> str:
    """`2024-05-01T12:00:00.123Z`: the report's times, in UTC to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class GateReport:
    instance_id: str
    slot: int
    result: str  # passed | failed
    started_at: str
    finished_at: str
    duration_s: float
    timeout_s: float
    checks: list[CheckResult]
    containers: list[ContainerState]
    failure: str | None = None
    failing_check: str | None = None
    failing_service: str | None = None
    log_tail: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    # The engine's own view of the failing container (exit code, OOM kill, health log): shown
    # when its log is empty, which is when a cause is hardest to find.
    engine_view: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.result == "passed"

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "slot": self.slot,
            "result": self.result,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3),
            "timeout_s": self.timeout_s,
            "failure": self.failure,
            "failing_check": self.failing_check,
            "failing_service": self.failing_service,
            "checks": [c.to_json() for c in self.checks],
            "containers": [c.to_json() for c in self.containers],
            "images": {c.service: c.image_id for c in self.containers if c.service},
            "log_tail": list(self.log_tail),
            "engine_view": list(self.engine_view),
            "urls": dict(self.urls),
        }


def report_path(root: Path) -> Path:
    return root / REPORT_DIR / REPORT_FILE


def write_report(root: Path, report: GateReport) -> Path:
    """Write `.sandbox/gate-report.json` atomically (temp file + fsync + rename)."""
    path = report_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report.to_json(), indent=2) + "\n", mode=None)
    return path


def read_report(root: Path) -> dict[str, Any] | None:
    """The last gate report of an instance, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(report_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def last_gate(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The summary of a report that `status` shows (result, when, how long, why it failed)."""
    if not report:
        return None
    return {key: report.get(key) for key in ("result", "finished_at", "duration_s", "failure")}

"""What `ktrdr sandbox doctor` found and did: one Problem per finding, the DoctorReport with
the verdict line and the `--json` form (the checks are in doctor/checks.py and
doctor/resources.py, the run in doctor/diagnose.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]


@dataclass
class Problem:
    kind: str
    subject: str
    detail: str
    severity: Severity = "error"
    fixed: str | None = None
    fixable: bool = False  # `doctor --fix` repairs this kind (the summary offers it only then)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "severity": self.severity,
            "fixed": self.fixed,
            "fixable": self.fixable,
        }


@dataclass
class DoctorReport:
    fix: bool
    problems: list[Problem] = field(default_factory=list)
    instances_checked: int = 0
    registry_checked: bool = True  # False: the registry could not be read
    docker_checked: bool = True  # False: no engine, so no label was looked at

    @property
    def open(self) -> list[Problem]:
        return [p for p in self.problems if p.fixed is None]

    @property
    def healthy(self) -> bool:
        return not any(p.severity == "error" for p in self.open)

    @property
    def actions(self) -> list[str]:
        return [f"{p.subject}: {p.fixed}" for p in self.problems if p.fixed]

    def summary_line(self) -> str:
        """The verdict, naming only what was actually checked."""
        parts = [f"{self.instances_checked} instance(s)"] if self.registry_checked else []
        if self.docker_checked:
            parts.append("Docker labels")
        checked = ", ".join([*parts, "host"]) + " checked"
        skipped = [
            *([] if self.registry_checked else ["registry (unreadable)"]),
            *([] if self.docker_checked else ["Docker resources (no engine)"]),
        ]
        if skipped:
            checked += f"; not checked: {', '.join(skipped)}"
        warnings = sum(1 for p in self.open if p.severity == "warning")
        others = sum(1 for p in self.open if p.severity == "info")
        if others:
            checked += f"; {others} note(s) on what others own, left alone"
        if self.healthy and warnings:
            return f"doctor: no errors, {warnings} warning(s) to look at ({checked})"
        if self.healthy:
            return f"doctor: healthy ({checked})"
        fixable = sum(1 for p in self.open if p.fixable)
        fix_hint = (
            f"; `ktrdr sandbox doctor --fix` repairs {fixable} of them"
            if fixable and not self.fix
            else ""
        )
        problems = sum(1 for p in self.open if p.severity != "info")
        return f"doctor: {problems} problem(s) ({checked}){fix_hint}"

    def to_json(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "fix": self.fix,
            "instances_checked": self.instances_checked,
            "registry_checked": self.registry_checked,
            "docker_checked": self.docker_checked,
            "problems": [p.to_json() for p in self.problems],
            "actions": self.actions,
        }

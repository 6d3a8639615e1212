"""Rendering of `ktrdr sandbox up`: live spinner lines on a TTY, plain lines elsewhere.

Progress (the check lines) goes to stderr; the verdict and URLs go to stdout.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ktrdr.cli.output import console, escape

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from ktrdr.cli.sandbox.gate import CheckResult, GateReport

PASS_MARK, FAIL_MARK = "✓", "✗"


def check_line(check: CheckResult) -> str:
    """`✓ Database ready (1.2s)`, `✓ Workers registered (2 backtest, 2 training) (5.1s)`."""
    timing = f" ({check.duration_s:.1f}s)" if check.duration_s is not None else ""
    if check.status == "passed":
        summary = f" ({check.detail})" if check.detail else ""
        return f"{PASS_MARK} {check.title}{summary}{timing}"
    if check.status == "failed":
        return f"{FAIL_MARK} {check.title}: {check.detail}{timing}"
    return f"  {check.title}" + (f" — {check.detail}" if check.detail else "")


class GateRenderer:
    """Call `update(checks)` from the gate's on_update; use as a context manager."""

    def __init__(self, *, live: bool | None = None, err: Console | None = None) -> None:
        self.err = err or console(stderr=True)
        self.live_mode = self.err.is_terminal if live is None else live
        self._live: Live | None = None
        self._printed: set[str] = set()

    def step(self, message: str) -> None:
        self.err.print(escape(message))

    def __enter__(self) -> GateRenderer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def update(self, checks: list[CheckResult]) -> None:
        if self.live_mode:
            self._live_update(checks)
            return
        for check in checks:  # plain: one line per check, once it is decided
            if check.status != "pending" and check.key not in self._printed:
                self._printed.add(check.key)
                self.err.print("  " + escape(check_line(check)))

    def _live_update(self, checks: list[CheckResult]) -> None:
        # Started on the first update, so nothing blank is drawn while containers start.
        if self._live is None:
            from rich.live import Live

            self._live = Live(
                console=self.err, refresh_per_second=10, transient=False, redirect_stdout=False
            )
            self._live.__enter__()
        self._live.update(self._renderable(checks), refresh=True)

    def _renderable(self, checks: list[CheckResult]) -> RenderableType:
        from rich.console import Group
        from rich.padding import Padding
        from rich.spinner import Spinner
        from rich.text import Text

        rows: list[Any] = []
        for check in checks:
            if check.status == "pending":
                text = Text(check.title)
                if check.detail:
                    text.append(f"  {check.detail}", style="dim")
                rows.append(Padding(Spinner("dots", text=text, style="cyan"), (0, 0, 0, 2)))
            else:
                style = "green" if check.status == "passed" else "red"
                line = Text("  ")
                line.append(check_line(check), style=style)
                rows.append(line)
        return Group(*rows)


def render_result(report: GateReport, *, report_file: str) -> None:
    """The verdict to stdout: PASSED with URLs, or FAILED with why, containers and log tail."""
    out = console()
    out.soft_wrap = True  # paths and log lines must stay whole (copyable), never re-wrapped
    if report.passed:
        out.print("Startability Gate: PASSED")
        out.print("Instance ready:")
        out.print(f"  API: {escape(report.urls.get('api_docs', ''))}")
        out.print(f"  Grafana: {escape(report.urls.get('grafana', ''))}")
        return
    out.print("Startability Gate: FAILED")
    failed = next((c for c in report.checks if c.status == "failed"), None)
    what = failed.title if failed else "Starting the containers"
    out.print(f"  {escape(what)}: {escape(report.failure or 'unknown failure')}")
    if report.containers:
        out.print("Containers:")
        for c in report.containers:
            health = f" ({c.health})" if c.health else ""
            code = f" exit {c.exit_code}" if c.exit_code is not None else ""
            restarts = f" restarts {c.restart_count}" if c.restart_count else ""
            out.print(
                f"  {escape(c.service or c.name):<20} {escape(c.state)}{health}{code}{restarts}"
            )
    else:
        out.print("Containers: none")
    if report.failing_service and report.log_tail:
        service = escape(report.failing_service)
        out.print(f"Last {len(report.log_tail)} log lines of {service} (stdout and stderr):")
        for line in report.log_tail:
            out.print(f"  | {escape(line)}")
    elif report.failing_service:
        out.print(f"{escape(report.failing_service)} logged nothing; the engine says:")
        for line in report.engine_view or ["(nothing: the container is gone)"]:
            out.print(f"  | {escape(line)}")
    out.print(f"Report: {escape(report_file)}")
    sys.stdout.flush()

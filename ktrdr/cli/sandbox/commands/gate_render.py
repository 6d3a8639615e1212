"""Rendering of `ktrdr sandbox up` and `resume`: live spinner lines on a TTY, plain lines
elsewhere.

Progress (the check lines) goes to stderr; the verdict and URLs go to stdout.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ktrdr.cli.output import console, escape, info, print_json

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from ktrdr.cli.sandbox.gate.checks import CheckResult
    from ktrdr.cli.sandbox.gate.report import GateReport
    from ktrdr.cli.sandbox.lifecycle.operations import UpResult

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


# Without a terminal (agents, CI) there is no spinner: a line at least this often says what is
# awaited, so a silent pipe never looks like a hang.
PROGRESS_EVERY_S = 4.0
DETAIL_CHARS = 90


def progress_line(checks: list[CheckResult], elapsed: float) -> str:
    """`… 12s: waiting for Backend healthy (health: not answering); Workers registered`."""
    pending = [c for c in checks if c.status == "pending"]
    if not pending:
        return f"… {elapsed:.0f}s: confirming the checks passed"
    parts = []
    for check in pending:
        detail = (
            check.detail
            if len(check.detail) <= DETAIL_CHARS
            else (check.detail[: DETAIL_CHARS - 1] + "…")
        )
        parts.append(f"{check.title} ({detail})" if detail else check.title)
    return f"… {elapsed:.0f}s: waiting for " + "; ".join(parts)


class GateRenderer:
    """Call `update(checks)` from the gate's on_update; use as a context manager."""

    def __init__(
        self,
        *,
        live: bool | None = None,
        err: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.err = err or console(stderr=True)
        self.live_mode = self.err.is_terminal if live is None else live
        self._live: Live | None = None
        self._printed: set[str] = set()
        self._clock = clock
        self._started = self._last_line = clock()
        self._checks: list[CheckResult] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _print(self, text: str, *, soft_wrap: bool = False) -> None:
        """soft_wrap: one physical line however long (a log reader greps lines)."""
        with self._lock:
            self.err.print(text, soft_wrap=soft_wrap)
            self._last_line = self._clock()

    def tick(self) -> None:
        """A progress line when nothing was printed for PROGRESS_EVERY_S (plain mode only).
        Called by the gate's updates and by a ticker thread, which covers a probe that
        blocks the gate's loop."""
        now = self._clock()
        if self.live_mode or now - self._last_line < PROGRESS_EVERY_S:
            return
        if self._checks:
            line = progress_line(self._checks, now - self._started)
        else:
            line = f"… {now - self._started:.0f}s: starting the containers"
        self._print("  " + escape(line), soft_wrap=True)

    def _tick_until_stopped(self) -> None:
        while not self._stop.wait(0.5):
            self.tick()

    def step(self, message: str) -> None:
        self._print(escape(message))

    def __enter__(self) -> GateRenderer:
        if not self.live_mode:
            self._ticker = threading.Thread(
                target=self._tick_until_stopped, name="gate-progress", daemon=True
            )
            self._ticker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def update(self, checks: list[CheckResult]) -> None:
        if self.live_mode:
            self._live_update(checks)
            return
        self._checks = list(checks)
        for check in checks:  # plain: one line per check, once it is decided
            if check.status != "pending" and check.key not in self._printed:
                self._printed.add(check.key)
                self._print("  " + escape(check_line(check)))
        self.tick()

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


def show_gate_result(result: UpResult, *, as_json: bool) -> None:
    """The gate's verdict as `up` and `resume` print it, then its failure (a GateFailedError:
    exit code 3) when it failed."""
    if as_json:
        print_json(result.to_json())
    if result.report is None:
        info("Containers started; gate skipped (--no-gate)")
        return
    if not as_json:
        render_result(result.report, report_file=str(result.report_file or "not written"))
    failure = result.failure()
    if failure is not None:
        raise failure

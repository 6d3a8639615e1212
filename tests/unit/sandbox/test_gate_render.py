"""What `ktrdr sandbox up` shows: check lines, the PASSED block, the FAILED block."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ktrdr.cli.sandbox.commands.gate_render import (
    GateRenderer,
    check_line,
    progress_line,
    render_result,
)
from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.checks import CheckResult
from ktrdr.cli.sandbox.gate.report import GateReport


def checks(*statuses: str) -> list[CheckResult]:
    keys = [
        ("database", "Database ready", ""),
        ("backend", "Backend healthy", ""),
        ("workers", "Workers registered", "2 backtest, 2 training"),
        ("observability", "Observability stack ready", ""),
    ]
    result = []
    for (key, title, detail), status in zip(keys, statuses, strict=False):
        done = status != "pending"
        result.append(
            CheckResult(
                key, title, 60.0, status=status, detail=detail, duration_s=1.25 if done else None
            )
        )
    return result


def report(result: str, **extra: object) -> GateReport:
    fields: dict = {
        "instance_id": "feat-operation-metrics",
        "slot": 2,
        "result": result,
        "started_at": "t0",
        "finished_at": "t1",
        "duration_s": 5.0,
        "timeout_s": 300.0,
        "checks": checks("passed", "passed", "passed", "passed"),
        "containers": [],
        "urls": {
            "api_docs": "http://localhost:8002/api/v1/docs",
            "grafana": "http://localhost:3002",
        },
    }
    fields.update(extra)
    return GateReport(**fields)


def test_check_lines_show_the_mark_the_title_the_summary_and_the_time() -> None:
    db, _, workers, _ = checks("passed", "pending", "passed", "pending")
    assert check_line(db) == "✓ Database ready (1.2s)"
    assert check_line(workers) == "✓ Workers registered (2 backtest, 2 training) (1.2s)"
    failed = CheckResult("backend", "Backend healthy", 60, "failed", "not ready after 60s", 60.0)
    assert check_line(failed) == "✗ Backend healthy: not ready after 60s (60.0s)"


def test_plain_rendering_prints_each_check_once_when_it_is_decided() -> None:
    buffer = io.StringIO()
    renderer = GateRenderer(live=False, err=Console(file=buffer, width=120))
    with renderer:
        renderer.update(checks("passed", "pending", "pending", "pending"))
        renderer.update(checks("passed", "passed", "pending", "pending"))
        renderer.update(checks("passed", "passed", "passed", "passed"))
    assert buffer.getvalue().splitlines() == [
        "  ✓ Database ready (1.2s)",
        "  ✓ Backend healthy (1.2s)",
        "  ✓ Workers registered (2 backtest, 2 training) (1.2s)",
        "  ✓ Observability stack ready (1.2s)",
    ]


def test_live_rendering_ends_with_the_final_lines_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=True, color_system=None)
    renderer = GateRenderer(live=True, err=console)
    with renderer:
        renderer.update(checks("passed", "pending", "pending", "pending"))
        renderer.update(checks("passed", "passed", "passed", "passed"))
    assert "✓ Observability stack ready (1.2s)" in buffer.getvalue()


def test_passed_result_prints_the_verdict_and_the_urls(capsys: pytest.CaptureFixture[str]) -> None:
    render_result(report("passed"), report_file=".sandbox/gate-report.json")
    assert capsys.readouterr().out.splitlines() == [
        "Startability Gate: PASSED",
        "Instance ready:",
        "  API: http://localhost:8002/api/v1/docs",
        "  Grafana: http://localhost:3002",
    ]


def test_failed_result_names_the_check_the_containers_and_the_log_tail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed_checks = checks("passed", "passed", "failed", "pending")
    failed_checks[2].detail = "backtest-worker-1 exited with code 3"
    worker = ContainerState("p-backtest-worker-1-1", "backtest-worker-1", "exited", None, "p", 3, 0,
                            None, [])  # fmt: skip
    backend = ContainerState("p-backend-1", "backend", "running", "healthy", "p", None, 0, None, [])
    failed = report(
        "failed",
        checks=failed_checks,
        containers=[backend, worker],
        failure="backtest-worker-1 exited with code 3",
        failing_check="workers",
        failing_service="backtest-worker-1",
        log_tail=["Traceback (most recent call last):", "SystemExit: 3", "[bold]literal"],
    )
    render_result(failed, report_file="/x/.sandbox/gate-report.json")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Startability Gate: FAILED"
    assert "  Workers registered: backtest-worker-1 exited with code 3" in out
    assert "backend              running (healthy)" in out
    assert "backtest-worker-1    exited exit 3" in out
    assert "Last 3 log lines of backtest-worker-1 (stdout and stderr):" in out
    assert "  | [bold]literal" in out
    assert "Report: /x/.sandbox/gate-report.json" in out


def test_a_failing_service_that_logged_nothing_shows_the_engine_s_view_instead(
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate = ContainerState("p-migrate-1", "migrate", "exited", None, "p", 1, 0, None, [])
    failed = report(
        "failed",
        checks=checks("failed", "pending", "pending", "pending"),
        containers=[migrate],
        failure="migrate exited with code 1",
        failing_check="database",
        failing_service="migrate",
        engine_view=["state exited, exit code 1, OOM-killed yes"],
    )
    render_result(failed, report_file="/x/r.json")
    out = capsys.readouterr().out
    assert "Last 0 log lines" not in out
    assert (
        "migrate logged nothing; the engine says:\n  | state exited, exit code 1, OOM-killed yes"
        in out
    )


class FakeClock:
    """Stands in for time.monotonic: the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_a_progress_line_says_what_is_awaited_at_least_every_5s() -> None:
    buffer = io.StringIO()
    clock = FakeClock()
    renderer = GateRenderer(live=False, err=Console(file=buffer, width=200), clock=clock)
    waiting = checks("passed", "pending", "pending", "pending")
    waiting[1].detail = "backend: not answering (connection refused)"
    waiting[2].detail = "0 backtest, 0 training registered of 2 backtest, 2 training"
    renderer.tick()  # nothing printed yet, but less than 4 s went by: quiet
    assert buffer.getvalue() == ""
    clock.now += 4.5
    renderer.tick()  # before the first update: the containers are being started
    clock.now += 1
    renderer.update(waiting)  # the database line resets the timer
    for _ in range(12):  # 12 s of rounds without a decided check
        clock.now += 1
        renderer.update(waiting)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "  … 4s: starting the containers"
    assert lines[1] == "  ✓ Database ready (1.2s)"
    progress = lines[2:]
    assert len(progress) == 3  # at 4, 8 and 12 s after the database line
    assert progress[0] == (
        "  … 10s: waiting for Backend healthy (backend: not answering (connection refused)); "
        "Workers registered (0 backtest, 0 training registered of 2 backtest, 2 training); "
        "Observability stack ready"
    )


@pytest.mark.timing
def test_a_blocked_gate_still_gets_progress_lines_from_the_ticker_thread() -> None:
    buffer = io.StringIO()
    clock = FakeClock()
    with GateRenderer(live=False, err=Console(file=buffer, width=200), clock=clock) as renderer:
        renderer.update(checks("pending", "pending", "pending", "pending"))
        clock.now += 60  # the gate's loop is stuck in a probe: no update comes
        import time

        deadline = time.monotonic() + 10
        while "… 60s" not in buffer.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "  … 60s: waiting for Database ready; Backend healthy" in buffer.getvalue()


def test_on_a_terminal_the_spinner_replaces_progress_lines() -> None:
    buffer = io.StringIO()
    clock = FakeClock()
    renderer = GateRenderer(live=True, err=Console(file=buffer, width=200), clock=clock)
    clock.now += 30
    renderer.tick()
    assert "…" not in buffer.getvalue()


def test_long_details_are_cut_in_progress_lines() -> None:
    waiting = checks("pending")
    waiting[0].detail = "x" * 500
    line = progress_line(waiting, 7.0)
    assert line.startswith("… 7s: waiting for Database ready (")
    assert len(line) < 140


def test_a_progress_line_stays_one_line_however_long() -> None:
    buffer = io.StringIO()
    clock = FakeClock()
    renderer = GateRenderer(live=False, err=Console(file=buffer, width=60), clock=clock)
    waiting = checks("pending", "pending")
    waiting[0].detail = "db is running (starting), and more words to pass sixty columns"
    clock.now += 5
    renderer.update(waiting)
    assert len(buffer.getvalue().splitlines()) == 1

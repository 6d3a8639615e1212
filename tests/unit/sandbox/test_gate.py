"""The Startability Gate's logic, driven by a fake clock and scripted stand-in probes."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.checks import (
    GateSpec,
    backend_verdict,
    database_verdict,
    find_crash,
    python_error_at_end,
    workers_verdict,
)
from ktrdr.cli.sandbox.gate.loop import run_gate
from ktrdr.cli.sandbox.gate.probes import HttpAnswer, ProbeError
from ktrdr.cli.sandbox.gate.report import read_report, write_report
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from tests.support.slots import TEST_SLOTS

INSTANCE = "ktrdr--feat-a"
PORTS = ports_for_slot(2)
WORKER_SERVICES = {
    "backtest-worker-1": "backtest",
    "backtest-worker-2": "backtest",
    "training-worker-1": "training",
    "training-worker-2": "training",
}


class FakeClock:
    """Stand-in for time.monotonic/time.sleep: sleeping advances the clock instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def container(
    service: str,
    *,
    state: str = "running",
    health: str | None = "healthy",
    exit_code: int | None = None,
    restarts: int = 0,
    ports: list[int] | None = None,
) -> ContainerState:
    return ContainerState(
        name=f"{INSTANCE}-{service}-1",
        service=service,
        state=state,
        health=health,
        instance_id=INSTANCE,
        exit_code=exit_code,
        restart_count=restarts,
        image_id=f"sha256:{service}",
        ports=ports or [],
    )


# Each worker service's published port (the gate probes its /health there).
WORKER_PORTS = {
    service: PORTS.all_ports()[f"worker_{index}"] for index, service in enumerate(WORKER_SERVICES)
}


def healthy_stack() -> list[ContainerState]:
    services = ["db", "backend", *WORKER_SERVICES, "prometheus", "grafana", "jaeger"]
    stack = [container(s, ports=[WORKER_PORTS[s]] if s in WORKER_PORTS else None) for s in services]
    stack.append(container("migrate", state="exited", health=None, exit_code=0))
    return stack


def all_workers() -> list[dict[str, Any]]:
    return [
        {"worker_id": s, "worker_type": t, "status": "idle", "endpoint": f"http://{s}:8080"}
        for s, t in WORKER_SERVICES.items()
    ]


class ScriptedProbes:
    """Stand-in for DockerProbes: answers are functions of the fake clock's time."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        containers: Callable[[float], list[ContainerState]] = lambda t: healthy_stack(),
        ready_at: dict[str, float] | None = None,
        health_body: Callable[[float], dict[str, Any]] | None = None,
        workers: Callable[[float], list[dict[str, Any]]] = lambda t: all_workers(),
        log_lines: list[str] | None = None,
    ) -> None:
        self.clock = clock
        self._containers = containers
        self.ready_at = ready_at or {}
        self.health_body = health_body or (
            lambda t: {"status": "ok", "database": "ok", "instance_id": INSTANCE}
        )
        self.workers = workers
        self.log_lines = log_lines or ["line 1", "line 2"]
        self.urls: list[str] = []
        self.logs_asked: list[tuple[str, int]] = []

    def containers(self) -> list[ContainerState]:
        return self._containers(self.clock())

    def http_get(self, url: str) -> HttpAnswer:
        self.urls.append(url)
        t = self.clock()
        key = self._key(url)
        if t < self.ready_at.get(key, 0.0):
            raise ProbeError("connection refused")
        if key == "backend":
            return HttpAnswer(200, self.health_body(t))
        if key == "workers":
            return HttpAnswer(200, self.workers(t))
        return HttpAnswer(200, "ok")

    @staticmethod
    def _key(url: str) -> str:
        if url.endswith("/api/v1/health"):
            return "backend"
        if url.endswith("/api/v1/workers"):
            return "workers"
        port = int(url.split(":")[2].split("/")[0])
        workers = {port: service for service, port in WORKER_PORTS.items()}
        return {
            PORTS.prometheus: "prometheus",
            PORTS.grafana: "grafana",
            PORTS.jaeger_ui: "jaeger",
            **workers,
        }[port]

    def logs(self, container_name: str, tail: int) -> list[str]:
        self.logs_asked.append((container_name, tail))
        return self.log_lines[-tail:]

    def engine_view(self, container_name: str) -> list[str]:
        return [f"state exited, exit code 1, OOM-killed no ({container_name})"]


def spec(timeout: float = 60.0) -> GateSpec:
    return GateSpec(
        instance_id=INSTANCE,
        ports=PORTS,
        expected_workers={"backtest": 2, "training": 2},
        worker_services=WORKER_SERVICES,
        one_shot_services=frozenset({"migrate"}),
        timeout=timeout,
    )


def run(probes: ScriptedProbes, clock: FakeClock, *, timeout: float = 60.0, updates=None):
    return run_gate(
        spec(timeout),
        probes,
        clock=clock,
        sleep=clock.sleep,
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        on_update=updates,
    )


def test_gate_passes_when_every_check_is_ready_and_records_when_each_became_ready() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(
        clock, ready_at={"backend": 2.0, "workers": 4.0, "grafana": 1.0, "jaeger": 3.0}
    )
    report = run(probes, clock)
    assert report.passed, report.failure
    timings = {c.key: c.duration_s for c in report.checks}
    assert timings["database"] == pytest.approx(0.0)
    assert timings["backend"] == pytest.approx(2.0)
    assert timings["workers"] == pytest.approx(4.0)
    assert timings["observability"] == pytest.approx(3.0)
    workers = next(c for c in report.checks if c.key == "workers")
    assert workers.detail == "2 backtest, 2 training"
    assert report.failure is None
    assert report.log_tail == []
    assert [c.detail for c in report.checks if c.key != "workers"] == ["", "", ""]


def test_registered_workers_that_do_not_answer_their_own_health_do_not_pass() -> None:
    # A hot reload broke the workers' code: their registrations (and heartbeats, for a while)
    # outlive them, but their /health is gone.
    clock = FakeClock()
    dead = ["backtest-worker-2", "training-worker-1"]
    probes = ScriptedProbes(clock, ready_at={service: 1e9 for service in dead})

    report = run(probes, clock, timeout=20.0)

    assert not report.passed
    workers = next(c for c in report.checks if c.key == "workers")
    assert workers.status == "failed"
    assert "registered, but backtest-worker-2, training-worker-1 not answering" in workers.detail


BROKEN_IMPORT_LOG = [
    "INFO:     Started reloader process [1] using WatchFiles",
    "Process SpawnProcess-2:",
    "Traceback (most recent call last):",
    '  File "/app/ktrdr/api/settings.py", line 44',
    "    def broken(:",
    "SyntaxError: invalid syntax",
]


def test_a_backend_whose_log_ends_in_a_python_error_fails_long_before_its_deadline() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(clock, ready_at={"backend": 1e9}, log_lines=BROKEN_IMPORT_LOG)

    report = run(probes, clock, timeout=240.0)

    backend = next(c for c in report.checks if c.key == "backend")
    assert backend.status == "failed"
    assert backend.detail == "backend is not starting: its log ends in SyntaxError: invalid syntax"
    assert report.duration_s is not None
    assert report.duration_s < 20
    assert "SyntaxError: invalid syntax" in report.log_tail


def test_an_error_in_the_log_of_a_backend_that_then_starts_is_no_failure() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(clock, ready_at={"backend": 11.0}, log_lines=BROKEN_IMPORT_LOG)
    assert run(probes, clock).passed


def test_python_error_at_end_needs_a_traceback_and_a_final_exception_line() -> None:
    assert python_error_at_end(BROKEN_IMPORT_LOG) == "SyntaxError: invalid syntax"
    assert (
        python_error_at_end([*BROKEN_IMPORT_LOG, "INFO:     Application startup complete."]) is None
    )
    assert python_error_at_end(["ValueError: x"]) is None  # no traceback: just a log line


def test_gate_report_carries_image_ids_container_states_and_urls() -> None:
    clock = FakeClock()
    report = run(ScriptedProbes(clock), clock).to_json()
    assert report["result"] == "passed"
    assert report["images"]["backend"] == "sha256:backend"
    assert {c["service"] for c in report["containers"]} >= {"db", "backend", "migrate"}
    assert report["urls"] == {
        "api_docs": "http://localhost:8002/api/v1/docs",
        "grafana": "http://localhost:3002",
    }
    assert report["started_at"] == "2026-01-01T00:00:00.000Z"
    assert [c["check"] for c in report["checks"]] == [
        "database",
        "backend",
        "workers",
        "observability",
    ]


def test_gate_probes_only_the_slots_published_loopback_ports() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(clock, ready_at={"workers": 1.0})
    run(probes, clock)
    assert probes.urls
    assert all(url.startswith("http://127.0.0.1:") for url in probes.urls)
    assert {int(u.split(":")[2].split("/")[0]) for u in probes.urls} == {
        PORTS.api,
        PORTS.prometheus,
        PORTS.grafana,
        PORTS.jaeger_ui,
        *WORKER_PORTS.values(),  # each worker's own /health
    }


def test_gate_fails_fast_when_a_worker_exits_and_shows_its_log_tail() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        stack = healthy_stack()
        if t >= 3.0:
            stack = [
                container("backtest-worker-1", state="exited", health=None, exit_code=3)
                if c.service == "backtest-worker-1"
                else c
                for c in stack
            ]
        return stack

    lines = [f"log {i}" for i in range(100)]
    probes = ScriptedProbes(
        clock,
        containers=containers,
        workers=lambda t: all_workers()[1:],
        log_lines=lines,
    )
    report = run(probes, clock, timeout=300)
    assert not report.passed
    assert report.failing_service == "backtest-worker-1"
    assert report.failure == "backtest-worker-1 exited with code 3"
    assert report.failing_check == "workers"
    assert report.duration_s <= 4.0  # detected within one container poll, not at the timeout
    assert report.log_tail == lines[-40:]
    assert probes.logs_asked == [
        (f"{INSTANCE}-backtest-worker-1-1", 80)
    ]  # twice the tail: blank lines are dropped


def test_gate_fails_fast_on_a_crash_loop_seen_as_a_rising_restart_count() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        restarts = int(t // 2)
        return [
            container("training-worker-2", restarts=restarts)
            if c.service == "training-worker-2"
            else c
            for c in healthy_stack()
        ]

    probes = ScriptedProbes(clock, containers=containers, workers=lambda t: [])
    report = run(probes, clock, timeout=300)
    assert not report.passed
    assert report.failing_service == "training-worker-2"
    assert "crash loop" in (report.failure or "")
    assert report.duration_s <= 3.0


def test_gate_ignores_the_migration_service_exiting_zero_but_not_exiting_non_zero() -> None:
    assert (
        find_crash(healthy_stack(), baseline_restarts={}, one_shot=frozenset({"migrate"})) is None
    )
    failed = [container("migrate", state="exited", health=None, exit_code=1)]
    crash = find_crash(failed, baseline_restarts={}, one_shot=frozenset({"migrate"}))
    assert crash is not None
    assert crash.service == "migrate"
    assert crash.reason == "migrate exited with code 1"


def test_a_long_running_service_exiting_zero_is_a_crash() -> None:
    stopped = [container("backend", state="exited", health=None, exit_code=0)]
    crash = find_crash(stopped, baseline_restarts={}, one_shot=frozenset({"migrate"}))
    assert crash is not None
    assert crash.service == "backend"


def test_a_restarting_container_is_a_crash_loop_even_on_the_first_look() -> None:
    looping = [container("backend", state="restarting", exit_code=3, restarts=4)]
    crash = find_crash(looping, baseline_restarts={}, one_shot=frozenset())
    assert crash is not None
    assert crash.reason == "backend is restarting (crash loop: exited with code 3, 4 restarts)"


def test_restarts_from_before_the_gate_do_not_count_as_a_crash() -> None:
    steady = [container("backend", restarts=2)]
    assert find_crash(steady, baseline_restarts={steady[0].name: 2}, one_shot=frozenset()) is None


def test_each_check_has_its_own_deadline_so_a_stuck_database_is_named_as_such() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        return [
            container("db", health="starting") if c.service == "db" else c for c in healthy_stack()
        ]

    probes = ScriptedProbes(clock, containers=containers, ready_at={"backend": 10_000})
    report = run(probes, clock, timeout=100)
    assert not report.passed
    assert report.failing_check == "database"
    assert report.failing_service == "db"
    assert report.failure == "not ready after 60s: db is running (starting)"
    assert report.duration_s == pytest.approx(60.0, abs=0.5)
    statuses = {c.key: c.status for c in report.checks}
    assert statuses == {
        "database": "failed",
        "backend": "pending",
        "workers": "passed",
        "observability": "passed",
    }


def test_every_check_is_tried_from_the_start_not_after_the_previous_one() -> None:
    clock = FakeClock()
    seen_at: dict[str, float] = {}

    class Recording(ScriptedProbes):
        def http_get(self, url: str) -> HttpAnswer:
            seen_at.setdefault(self._key(url), self.clock())
            return super().http_get(url)

    def containers(t: float) -> list[ContainerState]:
        health = "healthy" if t >= 5 else "starting"
        return [container("db", health=health) if c.service == "db" else c for c in healthy_stack()]

    report = run(Recording(clock, containers=containers), clock)
    assert report.passed
    # Workers' own /health needs their published ports from the first container snapshot.
    assert {seen_at[key] for key in seen_at if key not in WORKER_PORTS} == {0.0}
    assert {seen_at[key] for key in WORKER_PORTS} == {0.25}


def test_missing_workers_time_out_naming_the_worker_that_is_not_running() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        return [
            container("training-worker-1", health="starting")
            if c.service == "training-worker-1"
            else c
            for c in healthy_stack()
        ]

    workers = [w for w in all_workers() if w["worker_id"] != "training-worker-1"]
    probes = ScriptedProbes(clock, containers=containers, workers=lambda t: workers)
    report = run(probes, clock, timeout=20)
    assert not report.passed
    assert report.failing_check == "workers"
    assert report.failing_service == "training-worker-1"
    assert "2 backtest, 1 training registered of 2 backtest, 2 training" in (report.failure or "")


def test_unreachable_workers_do_not_count_as_registered() -> None:
    workers = all_workers()
    workers[0]["status"] = "unreachable"
    passed, detail, fatal = workers_verdict(
        HttpAnswer(200, workers), {"backtest": 2, "training": 2}
    )
    assert not passed
    assert not fatal
    assert detail == (
        "1 backtest, 2 training registered of 2 backtest, 2 training "
        "(1 more registered but unreachable: no heartbeat)"
    )


def test_another_instance_answering_on_the_api_port_fails_the_gate_at_once() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(
        clock, health_body=lambda t: {"status": "ok", "database": "ok", "instance_id": "other"}
    )
    report = run(probes, clock, timeout=300)
    assert not report.passed
    assert report.failing_check == "backend"
    assert "answers for instance 'other'" in (report.failure or "")
    assert report.duration_s < 1.0


def test_backend_with_a_broken_database_is_not_healthy_yet() -> None:
    answer = HttpAnswer(200, {"status": "degraded", "database": "error", "instance_id": INSTANCE})
    passed, detail, fatal = backend_verdict(answer, INSTANCE)
    assert (passed, fatal) == (False, False)
    assert detail == "health is 'degraded', database 'error'"


def test_observability_waits_for_prometheus_grafana_and_jaeger_and_names_the_missing_one() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(clock, ready_at={"grafana": 10_000})
    report = run(probes, clock, timeout=10)
    assert not report.passed
    assert report.failing_check == "observability"
    assert report.failing_service == "grafana"
    assert "grafana: not answering" in (report.failure or "")


def test_a_docker_query_failure_is_retried_not_fatal() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def containers(t: float) -> list[ContainerState]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ProbeError("docker inspect timed out")
        return healthy_stack()

    report = run(ScriptedProbes(clock, containers=containers), clock)
    assert report.passed


def test_updates_are_reported_every_round_for_live_rendering() -> None:
    clock = FakeClock()
    rounds: list[list[str]] = []
    probes = ScriptedProbes(clock, ready_at={"backend": 1.0})
    run(probes, clock, updates=lambda checks: rounds.append([c.status for c in checks]))
    assert rounds[0][1] == "pending"
    assert rounds[-1] == ["passed"] * 4


def test_http_checks_poll_every_quarter_second_and_containers_every_half_second() -> None:
    clock = FakeClock()
    ps_times: list[float] = []

    def containers(t: float) -> list[ContainerState]:
        ps_times.append(t)
        return healthy_stack()

    probes = ScriptedProbes(clock, containers=containers, ready_at={"workers": 2.0})
    report = run(probes, clock)
    assert report.passed
    health_polls = [u for u in probes.urls if u.endswith("/workers")]
    assert len(health_polls) == 9  # 0, 0.25, ..., 2.0
    assert ps_times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


class FakeStartup:
    """Stand-in for compose.StartingStack: done at a given fake time, with or without error."""

    def __init__(self, clock: FakeClock, *, done_at: float, error: str | None = None) -> None:
        self.clock, self.done_at, self._error = clock, done_at, error

    def done(self) -> bool:
        return self.clock() >= self.done_at

    def error(self) -> str | None:
        return self._error if self.done() else None


def run_starting(probes: ScriptedProbes, clock: FakeClock, startup: FakeStartup, timeout=60.0):
    return run_gate(
        spec(timeout),
        probes,
        clock=clock,
        sleep=clock.sleep,
        now=lambda: datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC),
        startup=startup,
    )


def stamped(c: ContainerState, started_at: str) -> ContainerState:
    return ContainerState(**{**c.__dict__, "started_at": started_at})


def test_the_gate_passes_only_once_the_containers_are_started() -> None:
    clock = FakeClock()
    report = run_starting(ScriptedProbes(clock), clock, FakeStartup(clock, done_at=5.0))
    assert report.passed
    assert report.duration_s == pytest.approx(5.0)
    durations = {c.key: c.duration_s for c in report.checks}
    # Workers: one poll later, once the snapshot gave their ports for the /health probes.
    assert durations == pytest.approx(
        {"database": 0.0, "backend": 0.0, "workers": 0.25, "observability": 0.0}
    )


def test_the_containers_are_read_as_soon_as_the_start_finishes() -> None:
    """Every check must pass again once compose is done, the database's from container states:
    they are read in that round, not at the next ps_interval (0.5 s) tick."""
    clock = FakeClock()
    report = run_starting(ScriptedProbes(clock), clock, FakeStartup(clock, done_at=5.25))
    assert report.passed
    assert report.duration_s == pytest.approx(5.25)


def test_containers_that_exited_before_this_up_are_not_crashes_while_compose_restarts_them() -> (
    None
):
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        stack = healthy_stack()
        if t < 3.0:  # left over from an earlier run, stopped before this `up`
            old = container("backend", state="exited", health=None, exit_code=137)
            stack = [stamped(old, "2026-01-01T11:00:00.5Z") if c.service == "backend" else c
                     for c in stack]  # fmt: skip
        return stack

    probes = ScriptedProbes(clock, containers=containers, ready_at={"backend": 3.0})
    report = run_starting(probes, clock, FakeStartup(clock, done_at=4.0))
    assert report.passed, report.failure


def test_a_container_that_crashes_during_the_start_fails_the_gate_at_once() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        stack = healthy_stack()
        if t >= 1.0:
            crashed = container("training-worker-1", state="exited", health=None, exit_code=3)
            stack = [stamped(crashed, "2026-01-01T12:00:00.9Z")
                     if c.service == "training-worker-1" else c for c in stack]  # fmt: skip
        return stack

    probes = ScriptedProbes(clock, containers=containers, workers=lambda t: [])
    report = run_starting(probes, clock, FakeStartup(clock, done_at=30.0))
    assert not report.passed
    assert report.failing_service == "training-worker-1"
    assert report.failure == "training-worker-1 exited with code 3"
    assert report.duration_s <= 1.5


def test_a_check_passed_during_the_start_is_confirmed_after_it() -> None:
    clock = FakeClock()

    class RecreatedBackend(ScriptedProbes):
        """The old backend answers, then compose recreates it (refused), then the new one."""

        def http_get(self, url: str) -> HttpAnswer:
            if url.endswith("/health") and 2.0 <= self.clock() < 6.0:
                self.urls.append(url)
                raise ProbeError("connection refused")
            return super().http_get(url)

    report = run_starting(RecreatedBackend(clock), clock, FakeStartup(clock, done_at=4.0))
    assert report.passed
    assert report.duration_s == pytest.approx(6.0)
    backend = next(c for c in report.checks if c.key == "backend")
    assert backend.duration_s == pytest.approx(0.0)  # when it was first seen ready
    assert backend.detail == ""


def test_when_compose_fails_the_crashed_service_is_named_with_its_logs() -> None:
    clock = FakeClock()
    failed = container("migrate", state="exited", health=None, exit_code=2)
    probes = ScriptedProbes(
        clock,
        containers=lambda t: [container("db"), failed] if t >= 2 else [container("db")],
        log_lines=["relation missing"],
    )
    startup = FakeStartup(clock, done_at=2.0, error="starting failed: migrate didn't complete")
    report = run_starting(probes, clock, startup)
    assert not report.passed
    assert report.failing_service == "migrate"
    assert report.failure == "migrate exited with code 2"
    assert report.log_tail == ["relation missing"]


def test_when_compose_fails_without_a_crash_its_error_is_the_reason() -> None:
    clock = FakeClock()
    probes = ScriptedProbes(clock, containers=lambda t: [], ready_at={"backend": 1e9})
    startup = FakeStartup(clock, done_at=0.5, error="image ktrdr-app:dev not found")
    report = run_starting(probes, clock, startup)
    assert report.failure == "image ktrdr-app:dev not found"
    assert report.failing_check is None
    assert report.failing_service is None
    assert report.log_tail == []
    assert all(c.status != "failed" for c in report.checks)


def test_check_deadlines_count_from_when_the_containers_are_started() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        return [container("db", health="starting") if c.service == "db" else c
                for c in healthy_stack()]  # fmt: skip

    probes = ScriptedProbes(clock, containers=containers)
    report = run_starting(probes, clock, FakeStartup(clock, done_at=50.0), timeout=100)
    assert report.failing_check == "database"
    assert report.duration_s == pytest.approx(110.0, abs=0.5)


def test_a_start_that_never_finishes_fails_after_the_startup_timeout() -> None:
    clock = FakeClock()
    gate_spec = GateSpec(
        instance_id=INSTANCE,
        ports=PORTS,
        expected_workers={"backtest": 2, "training": 2},
        worker_services=WORKER_SERVICES,
        startup_timeout=20.0,
    )
    report = run_gate(
        gate_spec,
        ScriptedProbes(clock),
        clock=clock,
        sleep=clock.sleep,
        startup=FakeStartup(clock, done_at=1e9),
    )
    assert report.failure == "the containers were not started after 20s"
    assert report.duration_s == pytest.approx(20.0, abs=0.5)


def test_report_is_written_as_json_under_dot_sandbox_and_read_back(tmp_path: Path) -> None:
    clock = FakeClock()
    report = run(ScriptedProbes(clock), clock)
    path = write_report(tmp_path, report)
    assert path == tmp_path / ".sandbox" / "gate-report.json"
    assert json.loads(path.read_text())["result"] == "passed"
    assert read_report(tmp_path) == report.to_json()
    assert not list((tmp_path / ".sandbox").glob(".*tmp"))


def test_read_report_is_none_when_missing_or_corrupt(tmp_path: Path) -> None:
    assert read_report(tmp_path) is None
    (tmp_path / ".sandbox").mkdir()
    (tmp_path / ".sandbox" / "gate-report.json").write_text("{not json")
    assert read_report(tmp_path) is None


def test_real_http_probe_parses_json_and_reports_refused_connections() -> None:
    from ktrdr.cli.sandbox.gate.probes import DockerProbes
    from tests.support.fake_api_server import standin_api_server

    probes = DockerProbes(Engine(), INSTANCE)
    try:
        with standin_api_server() as (url, _state):
            answer = probes.http_get(f"{url}/api/v1/health")
            port = int(url.rsplit(":", 1)[1])
        assert answer.status == 200
        assert answer.body["instance_id"] == INSTANCE
        with pytest.raises(ProbeError):
            probes.http_get(f"http://127.0.0.1:{port}/api/v1/health")  # server now closed
    finally:
        probes.close()


@contextlib.contextmanager
def socket_on_free_slot():
    """A slot whose API port nothing listens on (checked by binding it, then releasing)."""
    import socket as socket_module

    for slot in reversed(TEST_SLOTS):  # test slots: the user's sandboxes never use them
        with socket_module.socket() as sock:
            try:
                sock.bind(("127.0.0.1", ports_for_slot(slot).api))
            except OSError:
                continue
        yield slot
        return
    raise AssertionError(f"every test slot's API port is in use ({TEST_SLOTS})")


ONE_SHOT = frozenset({"migrate"})


def test_without_healthchecks_the_database_is_ready_when_the_migrations_are_done() -> None:
    """The stack has no Docker healthchecks (idle cost): the migrations connecting and
    exiting 0 is what proves the database ready."""
    db = container("db", health=None)
    waiting = [db, container("migrate", state="created", health=None)]
    running = [db, container("migrate", health=None)]
    done = [db, container("migrate", state="exited", health=None, exit_code=0)]
    assert database_verdict(waiting, "db", ONE_SHOT) == (
        False,
        "migrations running (migrate)",
        False,
    )
    assert database_verdict(running, "db", ONE_SHOT)[0] is False
    assert database_verdict(done, "db", ONE_SHOT) == (True, "", False)
    assert database_verdict([db], "db", ONE_SHOT)[1] == "waiting for the migrations (migrate)"
    stopped = [container("db", state="exited", health=None, exit_code=1), done[1]]
    assert database_verdict(stopped, "db", ONE_SHOT)[0] is False


# --- the cause of a failure ------------------------------------------------------------------


def _migrate_fails(log_lines: list[str]) -> Any:
    clock = FakeClock()
    failed = container("migrate", state="exited", health=None, exit_code=2)
    probes = ScriptedProbes(
        clock,
        containers=lambda t: [container("db"), failed] if t >= 2 else [container("db")],
        log_lines=log_lines,
    )
    startup = FakeStartup(clock, done_at=2.0, error="starting failed: migrate didn't complete")
    return run_starting(probes, clock, startup)


def test_blank_log_lines_are_dropped_so_the_stderr_cause_shows() -> None:
    # `docker logs` gives stdout and stderr; merged, a blank stdout line may come last.
    report = _migrate_fails(["psql: error: password authentication failed", "", "  "])
    assert report.log_tail == ["psql: error: password authentication failed"]
    assert report.engine_view == []


def test_a_service_that_logged_nothing_gets_the_engine_s_view() -> None:
    report = _migrate_fails(["", ""])
    assert report.log_tail == []
    assert report.engine_view == [
        f"state exited, exit code 1, OOM-killed no ({INSTANCE}-migrate-1)"
    ]
    assert report.to_json()["engine_view"] == report.engine_view


def test_containers_removed_under_the_gate_are_reported_as_such_not_as_a_crash() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        if t < 3:
            return healthy_stack()
        if t < 4:  # `compose down`: every container stopped (exit 0), not yet removed
            return [
                ContainerState(**{**c.__dict__, "state": "exited", "exit_code": 0})
                for c in healthy_stack()
            ]
        return []

    probes = ScriptedProbes(clock, containers=containers, ready_at={"workers": 1e9})
    report = run(probes, clock)
    assert not report.passed
    assert report.failure is not None
    assert "containers were removed while the gate ran" in report.failure
    assert "destroyed or taken down from outside" in report.failure
    assert report.failing_service is None
    assert report.log_tail == []


def test_a_service_exiting_0_on_its_own_is_still_reported_as_its_exit() -> None:
    clock = FakeClock()

    def containers(t: float) -> list[ContainerState]:
        stack = healthy_stack()
        if t < 3:
            return stack
        return [
            ContainerState(**{**c.__dict__, "state": "exited", "exit_code": 0})
            if c.service == "jaeger"
            else c
            for c in stack
        ]

    probes = ScriptedProbes(clock, containers=containers, ready_at={"workers": 1e9})
    report = run(probes, clock)
    assert report.failure == "jaeger exited with code 0"
    assert report.failing_service == "jaeger"
    assert report.log_tail == ["line 1", "line 2"]

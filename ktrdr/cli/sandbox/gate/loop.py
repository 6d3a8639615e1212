"""The Startability Gate: proves a started instance is usable before work begins.

Four checks run concurrently, each with its own deadline inside the overall timeout (so a slow
check never starves a later one): Database ready, Backend healthy, Workers registered,
Observability stack ready. Every round the probes (container state and HTTP to the published
127.0.0.1 ports) run in parallel threads; the verdict is decided in one thread, which keeps the
logic testable with a fake clock. The gate fails fast when a container exits or restarts.

This module is the loop. The verdicts are in gate_checks (pure), the probes in gate_probes,
the state kept between rounds in gate_state, what is gathered after a failure in gate_failure,
the report and its file in gate_report.
Clock, sleep and probes are injectable; `gate_probes.DockerProbes` is the real implementation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.checks import (
    BACKEND,
    DATABASE,
    OBSERVABILITY,
    OBSERVABILITY_SERVICES,
    WORKERS,
    CheckResult,
    Crash,
    GateSpec,
    Verdict,
    backend_verdict,
    blamed_check,
    blamed_service,
    database_verdict,
    find_crash,
    observability_verdict,
    workers_verdict,
)
from ktrdr.cli.sandbox.gate.failure import Diagnosis, diagnose
from ktrdr.cli.sandbox.gate.probes import GateProbes, HttpAnswer, ProbeError, Startup
from ktrdr.cli.sandbox.gate.report import GateReport, timestamp
from ktrdr.cli.sandbox.gate.state import (
    CheckBoard,
    ContainerWatch,
    Failure,
    StartupWatch,
    StuckWatch,
    WorkerLiveness,
)

WORKER_PREFIX = "worker:"  # the probe key of a worker's own /health


class _Gate:
    def __init__(
        self,
        spec: GateSpec,
        probes: GateProbes,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        on_update: Callable[[list[CheckResult]], None] | None,
        startup: StartupWatch,
    ) -> None:
        self.spec, self.probes, self.clock, self.sleep = spec, probes, clock, sleep
        self.on_update = on_update or (lambda checks: None)
        self.startup = startup
        self.board = CheckBoard(spec)
        self.containers = ContainerWatch()
        self.liveness = WorkerLiveness()
        self.stuck = StuckWatch(probes)
        self.failure: Failure | None = None

    def run(self) -> None:
        start = self.clock()
        last_ps: float | None = None
        with ThreadPoolExecutor(max_workers=6, thread_name_prefix="gate-probe") as pool:
            while True:
                elapsed = self.clock() - start
                was_started = self.startup.started
                self._watch_startup(elapsed)
                # The start just finished: every check must pass once more, the database's
                # from container states, so read them now rather than up to ps_interval later.
                poll_ps = (
                    last_ps is None
                    or elapsed - last_ps >= self.spec.ps_interval - 1e-9
                    or self.startup.started != was_started
                )
                if poll_ps:
                    last_ps = elapsed
                if self.failure is None:
                    self._round(pool, poll_ps)
                elapsed = self.clock() - start
                if self.failure is None:
                    self._watch_for_stuck_services(elapsed)
                self._settle(elapsed)
                self.on_update(list(self.board.checks.values()))
                if self.failure is not None or self.board.all_confirmed():
                    return
                self.sleep(self.spec.http_interval)

    # --- the start ------------------------------------------------------------------------

    def _watch_startup(self, elapsed: float) -> None:
        startup = self.startup.startup
        if startup is None or self.startup.started:
            return
        if not startup.done():
            if elapsed >= self.spec.startup_timeout:
                reason = f"the containers were not started after {self.spec.startup_timeout:.0f}s"
                self.failure = Failure(None, reason, None)
            return
        error = startup.error()
        if error is None:
            self.startup.ready_at = elapsed
            self.board.observed.clear()
            return
        # Compose gave up: name the container that crashed, when one did (a failed probe keeps
        # the last snapshot).
        with contextlib.suppress(Exception):
            self.containers.last = self.probes.containers()
        crash = find_crash(
            self.containers.last, baseline_restarts={}, one_shot=self.spec.one_shot_services
        )
        self.failure = Failure(None, error, None) if crash is None else self._crashed(crash)

    def _crashed(self, crash: Crash) -> Failure:
        return Failure(blamed_check(self.spec, crash.service), crash.reason, crash.service)

    # --- one round of probes --------------------------------------------------------------

    def _round(self, pool: ThreadPoolExecutor, poll_ps: bool) -> None:
        futures: dict[str, Future[Any]] = {}
        if poll_ps:
            futures["ps"] = pool.submit(self.probes.containers)
        for key, url in self._urls().items():
            futures[key] = pool.submit(self.probes.http_get, url)
        results: dict[str, Any] = {}
        for key, future in futures.items():
            try:
                results[key] = future.result()
            except Exception as e:  # any probe failure only means "not ready yet"
                results[key] = ProbeError(str(e) or type(e).__name__)
        if "ps" in results:
            self._on_containers(results.pop("ps"))
        # Worker liveness first: the workers verdict of this round depends on it.
        for key, answer in sorted(
            results.items(), key=lambda kv: not kv[0].startswith(WORKER_PREFIX)
        ):
            self._on_http(key, answer)

    def _to_probe(self, key: str) -> bool:
        return self.board.to_probe(key, self.startup.started)

    def _worker_ports(self) -> dict[str, int]:
        published = self.containers.worker_ports(self.spec.worker_services)
        return {s: self.spec.port_map.get(port, port) for s, port in published.items()}

    def _urls(self) -> dict[str, str]:
        base = f"http://127.0.0.1:{self.spec.ports.api}/api/v1"
        urls: dict[str, str] = {}
        if self._to_probe(BACKEND):
            urls[BACKEND] = f"{base}/health"
        if self._to_probe(WORKERS):
            urls[WORKERS] = f"{base}/workers"
            for service, port in self._worker_ports().items():
                urls[f"{WORKER_PREFIX}{service}"] = f"http://127.0.0.1:{port}/health"
        if self._to_probe(OBSERVABILITY):
            for name, url in self.spec.observability_urls().items():
                if name not in self.board.observed:
                    urls[name] = url
        return urls

    def _pass(self, check: CheckResult) -> None:
        self.board.passed(check, self.startup.started)

    def _on_containers(self, result: list[ContainerState] | ProbeError) -> None:
        check = self.board.checks[DATABASE]
        if isinstance(result, ProbeError):
            if check.status == "pending":
                check.detail = f"cannot read container state: {result}"
            return
        self.containers.update(result)
        watched = result
        if not self.startup.started:
            watched = [c for c in result if not self.startup.stale(c)]
        crash = find_crash(
            watched,
            baseline_restarts=self.containers.baseline or {},
            one_shot=self.spec.one_shot_services,
        )
        if crash is not None:
            self.failure = self._crashed(crash)
            return
        if self._to_probe(DATABASE):
            check.attempts += 1
            passed, detail, _ = database_verdict(
                result, self.spec.db_service, self.spec.one_shot_services
            )
            if passed:
                check.detail = ""
                self._pass(check)
            elif check.status == "pending":
                check.detail = detail

    def _on_http(self, key: str, answer: HttpAnswer | ProbeError) -> None:
        if key.startswith(WORKER_PREFIX):
            self.liveness.record(key.removeprefix(WORKER_PREFIX), answer)
            return
        check = self.board.checks[OBSERVABILITY if key in OBSERVABILITY_SERVICES else key]
        check.attempts += 1
        if isinstance(answer, ProbeError):
            if check.status == "pending":
                check.detail = f"{key}: not answering ({answer})"
            return
        if check.key == OBSERVABILITY:
            self._on_observability(check, key, answer)
        else:
            self._on_api(check, answer)

    def _on_observability(self, check: CheckResult, service: str, answer: HttpAnswer) -> None:
        if observability_verdict(answer):
            self.board.observed.add(service)
        elif check.status == "pending":
            check.detail = f"{service} answered HTTP {answer.status}"
        if self.board.observed.issuperset(OBSERVABILITY_SERVICES):
            check.detail = ""
            self._pass(check)

    def _on_api(self, check: CheckResult, answer: HttpAnswer) -> None:
        """The backend's /health or the registered workers."""
        # A passed check keeps its summary while its pass is being confirmed.
        pending = check.status == "pending"
        if check.key == BACKEND:
            passed, detail, fatal = backend_verdict(answer, self.spec.instance_id)
        else:
            passed, detail, fatal = self._workers_verdict(answer)
        if pending or passed:
            check.detail = detail
        if passed:
            self._pass(check)
        elif fatal:
            self.failure = Failure(check.key, detail, None)

    def _workers_verdict(self, answer: HttpAnswer) -> Verdict:
        passed, detail, fatal = workers_verdict(answer, self.spec.expected_workers)
        silent = self.liveness.silent(self._worker_ports())
        if passed and silent:
            return False, f"registered, but {', '.join(silent)} not answering its /health", fatal
        return passed, detail, fatal

    # --- after each round -----------------------------------------------------------------

    def _watch_for_stuck_services(self, elapsed: float) -> None:
        if not self.stuck.due(elapsed, self.startup.ready_at):
            return
        silent_workers = self.liveness.silent(self._worker_ports())
        for key, services in ((BACKEND, [self.spec.backend_service]), (WORKERS, silent_workers)):
            if self.board.checks[key].status != "pending":
                continue
            for service in services:
                error = self.stuck.error(service, self.containers.last, elapsed)
                if error is not None:
                    reason = f"{service} is not starting: its log ends in {error}"
                    self.failure = Failure(key, reason, service)
                    return

    def _settle(self, elapsed: float) -> None:
        """Stamp durations on checks that just passed; fail the first check past its deadline
        (deadlines count from when the containers are started)."""
        self.board.stamp(elapsed)
        ready_at = self.startup.ready_at
        if self.failure is None and ready_at is not None:
            overdue = self.board.overdue(elapsed - ready_at)
            if overdue is not None:
                key, reason = overdue
                self.failure = Failure(key, reason, self._service_for(key))
        if self.failure is not None:
            self.board.fail(self.failure, elapsed)

    def _service_for(self, key: str) -> str | None:
        return blamed_service(
            self.spec, key, observed=self.board.observed, containers=self.containers.last
        )


def run_gate(
    spec: GateSpec,
    probes: GateProbes,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_update: Callable[[list[CheckResult]], None] | None = None,
    startup: Startup | None = None,
) -> GateReport:
    """Run the gate until every check passes (and `startup`, when given, has finished), one
    fails, or a container crashes. With `startup` the gate watches the containers while they
    are being started, so a crash during the start is reported at once."""
    started_at = now()
    start = clock()
    watch = StartupWatch(startup, started_at)
    gate = _Gate(spec, probes, clock=clock, sleep=sleep, on_update=on_update, startup=watch)
    gate.run()
    duration = clock() - start
    failure, known = gate.failure, gate.containers.last
    diagnosis = None
    if failure is not None:
        diagnosis = diagnose(
            probes,
            known=known,
            failure=failure.reason,
            failing_service=failure.service,
            sleep=sleep,
        )
    return _report(
        spec,
        checks=list(gate.board.checks.values()),
        containers=known if diagnosis is None else diagnosis.containers,
        started_at=started_at,
        finished_at=now(),
        duration=duration,
        failing_check=None if failure is None else failure.check,
        diagnosis=diagnosis,
    )


def _report(
    spec: GateSpec,
    *,
    checks: list[CheckResult],
    containers: list[ContainerState],
    started_at: datetime,
    finished_at: datetime,
    duration: float,
    failing_check: str | None,
    diagnosis: Diagnosis | None,
) -> GateReport:
    urls = spec.ports.urls()
    return GateReport(
        instance_id=spec.instance_id,
        slot=spec.ports.slot,
        result="passed" if diagnosis is None else "failed",
        started_at=timestamp(started_at),
        finished_at=timestamp(finished_at),
        duration_s=duration,
        timeout_s=spec.timeout,
        checks=checks,
        containers=containers,
        failure=None if diagnosis is None else diagnosis.failure,
        failing_check=failing_check,
        failing_service=None if diagnosis is None else diagnosis.failing_service,
        log_tail=[] if diagnosis is None else diagnosis.log_tail,
        engine_view=[] if diagnosis is None else diagnosis.engine_view,
        urls={"api_docs": urls["api_docs"], "grafana": urls["grafana"]},
    )

"""The Startability Gate: proves a started instance is usable before work begins.

Four checks run concurrently, each with its own deadline inside the overall timeout (so a slow
check never starves a later one): Database ready, Backend healthy, Workers registered,
Observability stack ready. Every round the probes (container state and HTTP to the published
127.0.0.1 ports) run in parallel threads; the verdict is decided in one thread, which keeps the
logic testable with a fake clock. The gate fails fast when a container exits or restarts.

Clock, sleep and probes are injectable; `DockerProbes` is the real implementation.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ktrdr.cli.sandbox.engine import ContainerState
from ktrdr.cli.sandbox.ports import SlotPorts
from ktrdr.cli.sandbox.stack_file import FALLBACK_ONE_SHOT

REPORT_DIR = ".sandbox"
REPORT_FILE = "gate-report.json"
LOG_TAIL_LINES = 40
HTTP_TIMEOUT = 2.0

DATABASE, BACKEND, WORKERS, OBSERVABILITY = "database", "backend", "workers", "observability"
TITLES = {
    DATABASE: "Database ready",
    BACKEND: "Backend healthy",
    WORKERS: "Workers registered",
    OBSERVABILITY: "Observability stack ready",
}
# Each check's deadline as a share of the overall timeout: the database must be up well before
# the workers can register, so its failure is reported as its own.
DEADLINE_SHARE = {DATABASE: 0.6, BACKEND: 0.8, WORKERS: 1.0, OBSERVABILITY: 1.0}
OBSERVABILITY_SERVICES = ("prometheus", "grafana", "jaeger")


class ProbeError(Exception):
    """A probe could not get an answer (connection refused, timeout, docker failure)."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: Any  # parsed JSON when the response is JSON, else the text


class GateProbes(Protocol):
    def containers(self) -> list[ContainerState]: ...

    def http_get(self, url: str) -> HttpAnswer: ...

    def logs(self, container: str, tail: int) -> list[str]: ...

    def engine_view(self, container: str) -> list[str]: ...


class Startup(Protocol):
    """The containers being started (compose.StartingStack), watched while the gate runs."""

    def done(self) -> bool: ...

    def error(self) -> str | None: ...


@dataclass(frozen=True)
class GateSpec:
    """What the gate expects of one instance."""

    instance_id: str
    ports: SlotPorts
    expected_workers: Mapping[str, int]
    worker_services: Mapping[str, str] = field(default_factory=dict)  # service -> type
    one_shot_services: frozenset[str] = FALLBACK_ONE_SHOT  # lifecycle passes the file's
    db_service: str = "db"
    backend_service: str = "backend"
    timeout: float = 300.0  # per-check deadlines count from when the containers are started
    startup_timeout: float = 900.0  # for `compose up` itself (image builds can be slow)
    http_interval: float = 0.25
    ps_interval: float = 0.5

    def deadline(self, check: str) -> float:
        return self.timeout * DEADLINE_SHARE[check]

    def observability_urls(self) -> dict[str, str]:
        return {
            "prometheus": f"http://127.0.0.1:{self.ports.prometheus}/-/ready",
            "grafana": f"http://127.0.0.1:{self.ports.grafana}/api/health",
            "jaeger": f"http://127.0.0.1:{self.ports.jaeger_ui}/",
        }


@dataclass
class CheckResult:
    key: str
    title: str
    deadline_s: float
    status: str = "pending"  # pending | passed | failed
    detail: str = ""  # passed: a summary ("2 backtest, 2 training"); else what it waits for
    duration_s: float | None = None
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.key,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "deadline_s": round(self.deadline_s, 3),
            "attempts": self.attempts,
        }


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

    def as_dict(self) -> dict[str, Any]:
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
            "checks": [c.as_dict() for c in self.checks],
            "containers": [c.as_dict() for c in self.containers],
            "images": {c.service: c.image_id for c in self.containers if c.service},
            "log_tail": list(self.log_tail),
            "engine_view": list(self.engine_view),
            "urls": dict(self.urls),
        }


@dataclass(frozen=True)
class Crash:
    service: str
    container: str
    reason: str


def find_crash(
    containers: Sequence[ContainerState],
    *,
    baseline_restarts: Mapping[str, int],
    one_shot: frozenset[str],
) -> Crash | None:
    """A container that exited (except a one-shot service exiting 0) or is crash-looping."""
    for c in containers:
        if c.state in ("exited", "dead"):
            if c.service in one_shot and c.exit_code == 0:
                continue
            return Crash(c.service, c.name, f"{c.service} exited with code {c.exit_code}")
        code = f"exited with code {c.exit_code}, " if c.exit_code is not None else ""
        if c.state == "restarting":
            return Crash(
                c.service,
                c.name,
                f"{c.service} is restarting (crash loop: {code}{c.restart_count} restarts)",
            )
        before = baseline_restarts.get(c.name)
        if before is not None and c.restart_count > before:
            return Crash(
                c.service,
                c.name,
                f"{c.service} restarted {c.restart_count - before} time(s) during the gate "
                "(crash loop)",
            )
    return None


# --- the individual verdicts: (passed, detail, fatal) ----------------------------------------

Verdict = tuple[bool, str, bool]


def database_verdict(
    containers: Sequence[ContainerState], db_service: str, one_shot: frozenset[str]
) -> Verdict:
    """Ready once the database runs and the migrations (a one-shot service that connects and
    exits 0) are done; a compose file that gives the database a healthcheck is judged by it.
    A failed migration is a crash (find_crash), not a wait."""
    db = [c for c in containers if c.service == db_service]
    if not db:
        return False, f"no {db_service} container yet", False
    c = db[0]
    if c.state != "running":
        return False, f"{db_service} is {c.state}" + (f" ({c.health})" if c.health else ""), False
    if c.health is not None:  # a compose file with a database healthcheck: its verdict
        passed = c.health == "healthy"
        return passed, "" if passed else f"{db_service} is {c.state} ({c.health})", False
    migrations = [m for m in containers if m.service in one_shot]
    if any(m.state == "exited" and m.exit_code == 0 for m in migrations):
        return True, "", False
    if migrations:
        return False, f"migrations running ({', '.join(sorted(one_shot))})", False
    return False, f"waiting for the migrations ({', '.join(sorted(one_shot))})", False


def backend_verdict(answer: HttpAnswer, instance_id: str) -> Verdict:
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status != 200:
        return False, f"/api/v1/health answered HTTP {answer.status}", False
    found = body.get("instance_id")
    if found and found != instance_id:
        # Another stack answers on this instance's port: waiting cannot fix that.
        return False, f"the API port answers for instance {found!r}, not {instance_id!r}", True
    if body.get("status") != "ok" or body.get("database") != "ok":
        return (
            False,
            f"health is {body.get('status')!r}, database {body.get('database')!r}",
            False,
        )
    if found != instance_id:
        return False, "health does not report this instance's id", False
    return True, "", False


WORKER_PREFIX = "worker:"

# A backend or worker whose code fails to import (hot reload of a broken edit) keeps its
# container running — the reloader waits for the next change — so no crash is seen. Its log
# then ends in a Python exception and stops moving: that is a failure, not "not ready yet".
STUCK_GRACE_S = 8.0  # after the containers are started: normal start-up never looks stuck
STUCK_STILL_S = 4.0  # the log ended in the exception and has not changed for this long
STUCK_CHECK_INTERVAL_S = 2.0
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)(: .*)?$")


def python_error_at_end(lines: Sequence[str]) -> str | None:
    """The exception line a log ends in after a traceback (e.g. 'SyntaxError: …'), else None."""
    tail = [line.strip() for line in lines if line.strip()]
    # A long traceback's header may be cut off by the tail: its frame lines still show.
    if not tail or not any(
        "Traceback (most recent call last)" in line or line.startswith('File "') for line in tail
    ):
        return None
    return tail[-1] if _EXCEPTION_LINE.match(tail[-1]) else None


def workers_verdict(answer: HttpAnswer, expected: Mapping[str, int]) -> Verdict:
    if answer.status != 200 or not isinstance(answer.body, list):
        return False, f"/api/v1/workers answered HTTP {answer.status}", False
    counts = {worker_type: 0 for worker_type in expected}
    unreachable = 0
    for worker in answer.body:
        if not isinstance(worker, dict):
            continue
        if worker.get("status") == "unreachable":
            unreachable += 1
            continue
        worker_type = str(worker.get("worker_type"))
        counts[worker_type] = counts.get(worker_type, 0) + 1
    summary = ", ".join(f"{counts.get(t, 0)} {t}" for t in sorted(expected))
    if all(counts.get(t, 0) >= n for t, n in expected.items()):
        return True, summary, False
    wanted = ", ".join(f"{n} {t}" for t, n in sorted(expected.items()))
    # `workers list` shows those too: say why they do not count.
    stale = f" ({unreachable} more registered but unreachable: no heartbeat)" if unreachable else ""
    return False, f"{summary} registered of {wanted}{stale}", False


def observability_verdict(answer: HttpAnswer) -> bool:
    return 200 <= answer.status < 300


# --- the gate loop ----------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Gate:
    def __init__(
        self,
        spec: GateSpec,
        probes: GateProbes,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        on_update: Callable[[list[CheckResult]], None] | None,
        startup: Startup | None,
        started_wall: datetime,
    ) -> None:
        self.spec, self.probes, self.clock, self.sleep = spec, probes, clock, sleep
        self.startup = startup
        # Containers that exited before this `up` began are stale: compose restarts them.
        self.stale_before = _iso(started_wall)[:19]
        self.ready_at: float | None = None if startup is not None else 0.0
        self.on_update = on_update or (lambda checks: None)
        self.checks = {k: CheckResult(k, TITLES[k], spec.deadline(k)) for k in TITLES}
        self.containers: list[ContainerState] = []
        self.baseline: dict[str, int] | None = None
        self.observed: set[str] = set()
        # Passes seen while compose was still (re)creating containers are provisional: each
        # check must pass once more after the start before the gate can pass.
        self.confirmed: set[str] = set()
        self.failure: tuple[str | None, str, str | None] | None = None  # check, reason, service
        # Registrations outlive a worker by up to a heartbeat timeout (e.g. a hot reload that
        # broke its code): each worker must also answer its own /health on its published port.
        self.workers_alive: set[str] = set()
        self.error_logs: dict[str, tuple[float, list[str]]] = {}  # service -> (since, lines)
        self.last_stuck_check: float | None = None

    def run(self) -> None:
        start = self.clock()
        last_ps: float | None = None
        with ThreadPoolExecutor(max_workers=6, thread_name_prefix="gate-probe") as pool:
            while True:
                elapsed = self.clock() - start
                poll_ps = last_ps is None or elapsed - last_ps >= self.spec.ps_interval - 1e-9
                if poll_ps:
                    last_ps = elapsed
                self._watch_startup(elapsed)
                if self.failure is None:
                    self._round(pool, poll_ps)
                elapsed = self.clock() - start
                if self.failure is None:
                    self._watch_for_stuck_services(elapsed)
                self._settle(elapsed)
                self.on_update(list(self.checks.values()))
                if self.failure is not None or self.confirmed.issuperset(TITLES):
                    return
                self.sleep(self.spec.http_interval)

    def _watch_startup(self, elapsed: float) -> None:
        if self.startup is None or self.ready_at is not None:
            return
        if not self.startup.done():
            if elapsed >= self.spec.startup_timeout:
                self.failure = (
                    None,
                    f"the containers were not started after {self.spec.startup_timeout:.0f}s",
                    None,
                )
            return
        error = self.startup.error()
        if error is None:
            self.ready_at = elapsed
            self.observed.clear()
            return
        try:  # compose gave up: name the container that crashed, when one did
            self.containers = self.probes.containers()
        except Exception:  # keep the last snapshot
            pass
        crash = find_crash(
            self.containers, baseline_restarts={}, one_shot=self.spec.one_shot_services
        )
        if crash is None:
            self.failure = (None, error, None)
        else:
            self.failure = (self._check_for_service(crash.service), crash.reason, crash.service)

    def _starting(self) -> bool:
        return self.ready_at is None

    def _to_probe(self, key: str) -> bool:
        if self.checks[key].status == "pending":
            return True
        return self.ready_at is not None and key not in self.confirmed

    def _passed(self, check: CheckResult) -> None:
        check.status = "passed"
        if self.ready_at is not None:
            self.confirmed.add(check.key)

    def _round(self, pool: ThreadPoolExecutor, poll_ps: bool) -> None:
        urls = self._urls()
        futures: dict[str, Future[Any]] = {}
        if poll_ps:
            futures["ps"] = pool.submit(self.probes.containers)
        for key, url in urls.items():
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
                if name not in self.observed:
                    urls[name] = url
        return urls

    def _watch_for_stuck_services(self, elapsed: float) -> None:
        if self.ready_at is None or elapsed - self.ready_at < STUCK_GRACE_S:
            return
        if self.last_stuck_check is not None and (
            elapsed - self.last_stuck_check < STUCK_CHECK_INTERVAL_S - 1e-9
        ):
            return
        self.last_stuck_check = elapsed
        silent_workers = sorted(set(self._worker_ports()) - self.workers_alive)
        for key, services in ((BACKEND, [self.spec.backend_service]), (WORKERS, silent_workers)):
            if self.checks[key].status != "pending":
                continue
            for service in services:
                if self._stuck(service, elapsed):
                    error = python_error_at_end(self.error_logs[service][1])
                    reason = f"{service} is not starting: its log ends in {error}"
                    self.failure = (key, reason, service)
                    return

    def _stuck(self, service: str, elapsed: float) -> bool:
        running = [c for c in self.containers if c.service == service and c.state == "running"]
        if not running:
            return False
        try:
            lines = self.probes.logs(running[0].name, 200)
        except Exception:  # logs are a hint only
            return False
        if python_error_at_end(lines) is None:
            self.error_logs.pop(service, None)
            return False
        seen = self.error_logs.get(service)
        if seen is None or seen[1] != lines:
            self.error_logs[service] = (elapsed, list(lines))
            return False
        return elapsed - seen[0] >= STUCK_STILL_S

    def _worker_ports(self) -> dict[str, int]:
        """Published port of each worker service's container (from the last snapshot)."""
        return {
            c.service: c.ports[0]
            for c in self.containers
            if c.service in self.spec.worker_services and c.ports and c.state == "running"
        }

    def _on_containers(self, result: list[ContainerState] | ProbeError) -> None:
        check = self.checks[DATABASE]
        if isinstance(result, ProbeError):
            if check.status == "pending":
                check.detail = f"cannot read container state: {result}"
            return
        self.containers = result
        if self.baseline is None:
            self.baseline = {c.name: c.restart_count for c in result}
        watched = result
        if self._starting():
            watched = [c for c in result if not self._stale(c)]
        crash = find_crash(
            watched, baseline_restarts=self.baseline, one_shot=self.spec.one_shot_services
        )
        if crash is not None:
            self.failure = (self._check_for_service(crash.service), crash.reason, crash.service)
            return
        if self._to_probe(DATABASE):
            check.attempts += 1
            passed, detail, _ = database_verdict(
                result, self.spec.db_service, self.spec.one_shot_services
            )
            if passed:
                check.detail = ""
                self._passed(check)
            elif check.status == "pending":
                check.detail = detail

    def _stale(self, c: ContainerState) -> bool:
        """Exited before this `up` began (so not a crash of this start)."""
        started = (c.started_at or "")[:19]
        return c.state in ("exited", "dead") and bool(started) and started < self.stale_before

    def _check_for_service(self, service: str) -> str:
        if service == self.spec.db_service:
            return DATABASE
        if service in self.spec.worker_services:
            return WORKERS
        if service in OBSERVABILITY_SERVICES:
            return OBSERVABILITY
        return BACKEND

    def _on_http(self, key: str, answer: HttpAnswer | ProbeError) -> None:
        if key.startswith(WORKER_PREFIX):
            service = key.removeprefix(WORKER_PREFIX)
            if not isinstance(answer, ProbeError) and answer.status == 200:
                self.workers_alive.add(service)
            else:
                self.workers_alive.discard(service)
            return
        check_key = OBSERVABILITY if key in OBSERVABILITY_SERVICES else key
        check = self.checks[check_key]
        check.attempts += 1
        # A passed check keeps its summary while its pass is being confirmed.
        pending = check.status == "pending"
        if isinstance(answer, ProbeError):
            if pending:
                check.detail = f"{key}: not answering ({answer})"
            return
        if check_key == OBSERVABILITY:
            if observability_verdict(answer):
                self.observed.add(key)
            elif pending:
                check.detail = f"{key} answered HTTP {answer.status}"
            if self.observed.issuperset(OBSERVABILITY_SERVICES):
                check.detail = ""
                self._passed(check)
            return
        if key == BACKEND:
            passed, detail, fatal = backend_verdict(answer, self.spec.instance_id)
        else:
            passed, detail, fatal = workers_verdict(answer, self.spec.expected_workers)
            silent = sorted(set(self._worker_ports()) - self.workers_alive)
            if passed and silent:
                passed = False
                detail = f"registered, but {', '.join(silent)} not answering its /health"
        if pending or passed:
            check.detail = detail
        if passed:
            self._passed(check)
        elif fatal:
            self.failure = (check_key, detail, None)

    def _settle(self, elapsed: float) -> None:
        """Stamp durations on checks that just passed; fail the first check past its deadline."""
        for check in self.checks.values():
            if check.status == "passed" and check.duration_s is None:
                check.duration_s = elapsed
        if self.failure is not None:
            key, reason, _ = self.failure
            self._fail(key, reason, elapsed)
            return
        if self.ready_at is None:
            return  # deadlines count from when the containers are started
        for check in self.checks.values():
            if check.key in self.confirmed or elapsed - self.ready_at < check.deadline_s:
                continue
            if check.status == "passed":
                reason = "was ready during the start, but not after it"
                self.failure = (check.key, reason, self._service_for(check.key))
                self._fail(check.key, reason, elapsed)
                return
            if check.status == "pending":
                waited = f"not ready after {check.deadline_s:.0f}s"
                reason = f"{waited}: {check.detail}" if check.detail else waited
                self.failure = (check.key, reason, self._service_for(check.key))
                self._fail(check.key, reason, elapsed)
                return

    def _fail(self, key: str | None, reason: str, elapsed: float) -> None:
        if key is None:  # the start itself failed: no check is to blame
            return
        check = self.checks[key]
        check.status, check.detail, check.duration_s = "failed", reason, elapsed

    def _service_for(self, key: str) -> str | None:
        if key == DATABASE:
            return self.spec.db_service
        if key == BACKEND:
            return self.spec.backend_service
        if key == OBSERVABILITY:
            missing = [s for s in OBSERVABILITY_SERVICES if s not in self.observed]
            return missing[0] if missing else None
        return self._unregistered_worker_service()

    def _unregistered_worker_service(self) -> str | None:
        """A worker service that is not running healthy, else the first worker service."""
        running = {c.service for c in self.containers if c.healthy}
        services = sorted(self.spec.worker_services)
        missing = [s for s in services if s not in running]
        candidates = missing or services
        return candidates[0] if candidates else None


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
    gate = _Gate(spec, probes, clock, sleep, on_update, startup, started_at)
    gate.run()
    failing_check = failure = failing_service = None
    if gate.failure is not None:
        failing_check, failure, failing_service = gate.failure
    return _finish(
        spec,
        probes,
        sleep=sleep,
        checks=list(gate.checks.values()),
        containers=gate.containers,
        started_at=started_at,
        duration=clock() - start,
        now=now,
        failure=failure,
        failing_check=failing_check,
        failing_service=failing_service,
    )


def _finish(
    spec: GateSpec,
    probes: GateProbes,
    *,
    sleep: Callable[[float], None],
    checks: list[CheckResult],
    containers: list[ContainerState],
    started_at: datetime,
    duration: float,
    now: Callable[[], datetime],
    failure: str | None,
    failing_check: str | None,
    failing_service: str | None,
) -> GateReport:
    log_tail: list[str] = []
    engine_view: list[str] = []
    if failure is not None:
        known = containers
        containers, gone = _containers_at_failure(probes, known, failing_service, sleep)
        if gone:
            failure = (
                f"the instance's containers were removed while the gate ran ({len(gone)} of "
                f"{len(known)} gone, e.g. {gone[0]}): it was destroyed or taken down from "
                "outside (`ktrdr sandbox destroy`/`down`, `docker compose down`), not a crash"
                + (f" of {failing_service}" if failing_service else "")
            )
            failing_service = None
        container = next((c.name for c in containers if c.service == failing_service), None)
        if container is not None:
            log_tail, engine_view = _cause(probes, container)
    urls = spec.ports.urls()
    return GateReport(
        instance_id=spec.instance_id,
        slot=spec.ports.slot,
        result="failed" if failure is not None else "passed",
        started_at=_iso(started_at),
        finished_at=_iso(now()),
        duration_s=duration,
        timeout_s=spec.timeout,
        checks=checks,
        containers=containers,
        failure=failure,
        failing_check=failing_check,
        failing_service=failing_service,
        log_tail=log_tail,
        engine_view=engine_view,
        urls={"api_docs": urls["api_docs"], "grafana": urls["grafana"]},
    )


# A server that exits 0 (or on SIGTERM/SIGKILL) was stopped rather than crashed: `compose
# down` stops every container before removing them, so look again for a moment.
STOP_EXIT_CODES = (0, 137, 143)
VANISH_POLLS = 6
VANISH_POLL_S = 0.5


def _containers_at_failure(
    probes: GateProbes,
    known: list[ContainerState],
    failing_service: str | None,
    sleep: Callable[[float], None],
) -> tuple[list[ContainerState], list[str]]:
    """The containers at the moment of failure, and the names of those that vanished since
    the last snapshot (the instance was destroyed or taken down under the gate)."""
    stopped = any(
        c.service == failing_service and c.state == "exited" and c.exit_code in STOP_EXIT_CODES
        for c in known
    )
    current = known
    for attempt in range(VANISH_POLLS if stopped else 1):
        if attempt:
            sleep(VANISH_POLL_S)
        try:
            current = probes.containers()
        except Exception:  # keep the last snapshot
            return known, []
        names = {c.name for c in current}
        gone = sorted(c.name for c in known if c.name not in names)
        if gone:
            return current, gone
    return current, []


def _cause(probes: GateProbes, container: str) -> tuple[list[str], list[str]]:
    """The failing container's last log lines (stdout and stderr merged, blank lines dropped)
    and, when it logged nothing, the engine's view of it."""
    try:
        lines = [line for line in probes.logs(container, LOG_TAIL_LINES * 2) if line.strip()]
    except Exception as e:  # the report still names the service
        lines = [f"(logs unavailable: {e})"]
    if lines:
        return lines[-LOG_TAIL_LINES:], []
    try:
        return [], probes.engine_view(container)
    except Exception as e:
        return [], [f"(docker inspect unavailable: {e})"]


def report_path(root: Path) -> Path:
    return root / REPORT_DIR / REPORT_FILE


def write_report(root: Path, report: GateReport) -> Path:
    """Write `.sandbox/gate-report.json` atomically (temp file + rename)."""
    path = report_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{REPORT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_report(root: Path) -> dict[str, Any] | None:
    """The last gate report of an instance, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(report_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class DockerProbes:
    """The real probes: `docker inspect` by label and HTTP to 127.0.0.1 published ports."""

    def __init__(self, instance_id: str, *, engine_timeout: float | None = None) -> None:
        """`engine_timeout`: a shorter limit for docker queries (`status` must not hang)."""
        import httpx

        self.instance_id = instance_id
        self.engine_timeout = engine_timeout
        # Proxies must never see loopback probes: trust_env=False ignores HTTP(S)_PROXY.
        self._client = httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False)

    def containers(self) -> list[ContainerState]:
        from ktrdr.cli.sandbox import engine

        return engine.ps(self.instance_id)

    def http_get(self, url: str) -> HttpAnswer:
        import httpx

        try:
            response = self._client.get(url)
        except httpx.ConnectError as e:
            raise ProbeError("connection refused") from e
        except httpx.TimeoutException as e:
            raise ProbeError(f"no answer within {HTTP_TIMEOUT:g}s") from e
        except httpx.HTTPError as e:
            raise ProbeError(str(e) or type(e).__name__) from e
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return HttpAnswer(response.status_code, body)

    def logs(self, container: str, tail: int) -> list[str]:
        from ktrdr.cli.sandbox import container_logs
        from ktrdr.cli.sandbox.engine import QUERY_TIMEOUT

        timeout = self.engine_timeout or QUERY_TIMEOUT
        return container_logs.container_logs(container, tail=tail, timeout=timeout)

    def engine_view(self, container: str) -> list[str]:
        from ktrdr.cli.sandbox import container_logs

        return container_logs.engine_view(container)

    def close(self) -> None:
        self._client.close()

"""The Startability Gate's checks: what each one expects, and its verdicts on what was seen.

Pure: no I/O, no threads, no clock. The gate loop (gate/loop.py) feeds these functions the probes'
answers; each verdict is `(passed, detail, fatal)`, where `fatal` means waiting cannot help.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.probes import HttpAnswer
from ktrdr.cli.sandbox.slots.ports import SlotPorts

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


@dataclass(frozen=True)
class GateSpec:
    """What the gate expects of one instance."""

    instance_id: str
    ports: SlotPorts
    expected_workers: Mapping[str, int]
    worker_services: Mapping[str, str] = field(default_factory=dict)  # service -> type
    # A remote instance's containers publish engine ports; this machine reaches them here.
    port_map: Mapping[int, int] = field(default_factory=dict)
    one_shot_services: frozenset[str] = frozenset({"migrate"})
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

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.key,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "deadline_s": round(self.deadline_s, 3),
            "attempts": self.attempts,
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


def blamed_check(spec: GateSpec, service: str) -> str:
    """The check a failure of `service` is reported under."""
    if service == spec.db_service:
        return DATABASE
    if service in spec.worker_services:
        return WORKERS
    if service in OBSERVABILITY_SERVICES:
        return OBSERVABILITY
    return BACKEND


def blamed_service(
    spec: GateSpec, check: str, *, observed: Iterable[str], containers: Sequence[ContainerState]
) -> str | None:
    """The service to blame when `check` runs out of time: for the observability stack the
    first service not seen up, for the workers one that is not running healthy."""
    if check == DATABASE:
        return spec.db_service
    if check == BACKEND:
        return spec.backend_service
    if check == OBSERVABILITY:
        seen = set(observed)
        missing = [s for s in OBSERVABILITY_SERVICES if s not in seen]
        return missing[0] if missing else None
    running = {c.service for c in containers if c.healthy}
    services = sorted(spec.worker_services)
    candidates = [s for s in services if s not in running] or services
    return candidates[0] if candidates else None


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


# A backend or worker whose code fails to import (hot reload of a broken edit) keeps its
# container running — the reloader waits for the next change — so no crash is seen. Its log
# then ends in a Python exception and stops moving: that is a failure, not "not ready yet".
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

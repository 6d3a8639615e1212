"""The state the Startability Gate's loop keeps between rounds, each part in its own small
object: the checks and their confirmed passes, the start of the containers, the last container
snapshot, the workers' own liveness, and services stuck on a Python exception. No threads and
no clock: the loop (gate/loop.py) passes the elapsed time in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.checks import TITLES, CheckResult, GateSpec, python_error_at_end
from ktrdr.cli.sandbox.gate.probes import GateProbes, HttpAnswer, ProbeError, Startup
from ktrdr.cli.sandbox.gate.report import timestamp

# A backend or worker whose code fails to import keeps its container running, its log ending in
# a Python exception that stops moving (gate_checks.python_error_at_end): that is a failure.
STUCK_GRACE_S = 8.0  # after the containers are started: normal start-up never looks stuck
STUCK_STILL_S = 4.0  # the log ended in the exception and has not changed for this long
STUCK_CHECK_INTERVAL_S = 2.0


@dataclass(frozen=True)
class Failure:
    check: str | None  # None: the start itself failed, no check is to blame
    reason: str
    service: str | None


class StartupWatch:
    """The containers being started: when the start finished, and which exits predate it."""

    def __init__(self, startup: Startup | None, started_wall: datetime) -> None:
        self.startup = startup
        # Containers that exited before this `up` began are stale: compose restarts them.
        self.stale_before = timestamp(started_wall)[:19]
        self.ready_at: float | None = None if startup is not None else 0.0

    @property
    def started(self) -> bool:
        return self.ready_at is not None

    def stale(self, c: ContainerState) -> bool:
        """Exited before this `up` began (so not a crash of this start)."""
        started = (c.started_at or "")[:19]
        return c.state in ("exited", "dead") and bool(started) and started < self.stale_before


class CheckBoard:
    """The four checks, which of their passes are confirmed, and the observability services
    seen up. Passes seen while compose was still (re)creating containers are provisional:
    each check must pass once more after the start before the gate can pass."""

    def __init__(self, spec: GateSpec) -> None:
        self.checks = {k: CheckResult(k, TITLES[k], spec.deadline(k)) for k in TITLES}
        self.confirmed: set[str] = set()
        self.observed: set[str] = set()

    def to_probe(self, key: str, started: bool) -> bool:
        if self.checks[key].status == "pending":
            return True
        return started and key not in self.confirmed

    def passed(self, check: CheckResult, started: bool) -> None:
        check.status = "passed"
        if started:
            self.confirmed.add(check.key)

    def all_confirmed(self) -> bool:
        return self.confirmed.issuperset(TITLES)

    def stamp(self, elapsed: float) -> None:
        """Stamp durations on checks that just passed."""
        for check in self.checks.values():
            if check.status == "passed" and check.duration_s is None:
                check.duration_s = elapsed

    def overdue(self, since_start: float) -> tuple[str, str] | None:
        """The first unconfirmed check past its deadline, and why it failed."""
        for check in self.checks.values():
            if check.key in self.confirmed or since_start < check.deadline_s:
                continue
            if check.status == "passed":
                return check.key, "was ready during the start, but not after it"
            if check.status == "pending":
                waited = f"not ready after {check.deadline_s:.0f}s"
                return check.key, f"{waited}: {check.detail}" if check.detail else waited
        return None

    def fail(self, failure: Failure, elapsed: float) -> None:
        if failure.check is None:  # the start itself failed: no check is to blame
            return
        check = self.checks[failure.check]
        check.status, check.detail, check.duration_s = "failed", failure.reason, elapsed


class ContainerWatch:
    """The last container snapshot, and each container's restart count in the first one."""

    def __init__(self) -> None:
        self.last: list[ContainerState] = []
        self.baseline: dict[str, int] | None = None

    def update(self, snapshot: list[ContainerState]) -> None:
        self.last = snapshot
        if self.baseline is None:
            self.baseline = {c.name: c.restart_count for c in snapshot}

    def worker_ports(self, worker_services: Mapping[str, str]) -> dict[str, int]:
        """Published port of each running worker service's container."""
        return {
            c.service: c.ports[0]
            for c in self.last
            if c.service in worker_services and c.ports and c.state == "running"
        }


class WorkerLiveness:
    """Registrations outlive a worker by up to a heartbeat timeout (e.g. a hot reload that
    broke its code): each worker must also answer its own /health on its published port."""

    def __init__(self) -> None:
        self.alive: set[str] = set()

    def record(self, service: str, answer: HttpAnswer | ProbeError) -> None:
        if not isinstance(answer, ProbeError) and answer.status == 200:
            self.alive.add(service)
        else:
            self.alive.discard(service)

    def silent(self, worker_ports: Mapping[str, int]) -> list[str]:
        return sorted(set(worker_ports) - self.alive)


class StuckWatch:
    """Services whose log ends in a Python exception and has stood still for STUCK_STILL_S."""

    def __init__(self, probes: GateProbes) -> None:
        self.probes = probes
        self.error_logs: dict[str, tuple[float, list[str]]] = {}  # service -> (since, lines)
        self.last_check: float | None = None

    def due(self, elapsed: float, ready_at: float | None) -> bool:
        if ready_at is None or elapsed - ready_at < STUCK_GRACE_S:
            return False
        if self.last_check is not None and (
            elapsed - self.last_check < STUCK_CHECK_INTERVAL_S - 1e-9
        ):
            return False
        self.last_check = elapsed
        return True

    def error(self, service: str, containers: list[ContainerState], elapsed: float) -> str | None:
        """The exception `service`'s log ends in, once that log has stood still long enough."""
        running = [c for c in containers if c.service == service and c.state == "running"]
        if not running:
            return None
        try:
            lines = self.probes.logs(running[0].name, 200)
        except Exception:  # logs are a hint only
            return None
        error = python_error_at_end(lines)
        if error is None:
            self.error_logs.pop(service, None)
            return None
        seen = self.error_logs.get(service)
        if seen is None or seen[1] != lines:
            self.error_logs[service] = (elapsed, list(lines))
            return None
        return error if elapsed - seen[0] >= STUCK_STILL_S else None

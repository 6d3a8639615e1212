"""The verdict of `list` and `status`, derived from what was just observed.

Docker's own health status lags (a healthcheck runs every few seconds and needs several
failures), and the backend's worker registry keeps a stopped worker for its heartbeat timeout.
So `status` asks each part itself, now, with the gate's probes and verdicts; `list` only looks
at container states (one `docker ps`), which is cheap. Either way the state word agrees with the
details shown below it: `running` only when nothing observed says otherwise, `degraded` with
the reasons when something does.

Imported by `list`: no heavy imports at module level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.base.stack_file import StackFile
    from ktrdr.cli.sandbox.gate.probes import GateProbes

STARTING = "health: starting"


def container_problems(
    containers: Sequence[Any],
    *,
    short_lived: frozenset[str],
    answered: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """What the container states say is wrong (`short_lived` services, StackFile.short_lived,
    excluded), e.g. 'backend restarting', 'db unhealthy', 'backtest-worker-1 paused'. Docker's
    'starting' lags behind a service that already answers: services in `answered` (probed just
    now) are not reported as starting."""
    problems: list[str] = []
    for c in containers:
        if c.service in short_lived:
            continue
        if c.state == "running":
            if c.health == "unhealthy":
                problems.append(f"{c.service} unhealthy")
            elif c.health == "starting" and c.service not in answered:
                problems.append(f"{c.service} {STARTING}")
        elif c.state in ("exited", "dead") and c.exit_code is not None:
            problems.append(f"{c.service} {c.state} (code {c.exit_code})")
        else:
            problems.append(f"{c.service} {c.state}")
    return problems


def verdict(problems: Sequence[str]) -> str:
    """running with no problems; starting when healthchecks are all that is pending."""
    if not problems:
        return "running"
    return "starting" if all(p.endswith(STARTING) for p in problems) else "degraded"


def docker_state(containers: Sequence[Any] | None, *, short_lived: frozenset[str]) -> str:
    """running / starting / degraded / paused / stopped / unknown from container states alone
    (for `list`), `short_lived` services not counted. `paused` when any container is frozen
    (`up` thaws them)."""
    if containers is None:
        return "unknown"
    services = [c for c in containers if c.service not in short_lived]
    if any(c.state == "paused" for c in services):
        return "paused"
    if not any(c.state == "running" for c in services):
        return "stopped"
    return verdict(container_problems(services, short_lived=short_lived))


@dataclass
class Observation:
    """What `status` saw just now: the API, each worker, and the verdict."""

    state: str
    reasons: list[str] = field(default_factory=list)
    api_responding: bool | None = None  # None: not probed (stack not running)
    api_instance_id: str | None = None
    api_ok: bool = False  # answered, for this instance, with status and database ok
    workers: dict[str, int] | None = None  # registered AND answering their /health, per type
    silent_workers: list[str] = field(default_factory=list)  # services not answering /health

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "reasons": list(self.reasons),
            "api_responding": self.api_responding,
            "api_instance_id": self.api_instance_id,
            "workers_registered": self.workers,
            "workers_not_answering": list(self.silent_workers),
        }


@dataclass(frozen=True)
class StackFacts:
    """The instance to observe and what its compose file says the stack should have."""

    instance_id: str
    api_port: int
    stack: StackFile
    port_map: Mapping[int, int] = field(default_factory=dict)  # engine -> local (remote)


def observe(containers: Sequence[Any] | None, facts: StackFacts, probes: GateProbes) -> Observation:
    """The verdict from container states plus, when the stack runs, fresh HTTP probes of the
    API (/health, /workers) and of each worker's own /health, in parallel."""
    short_lived = facts.stack.short_lived
    state = docker_state(containers, short_lived=short_lived)
    if containers is None or state == "stopped":
        return Observation(state)
    services = [c for c in containers if c.service not in short_lived]
    workers = facts.stack.worker_services
    reasons: list[str] = []
    base = f"http://127.0.0.1:{facts.api_port}/api/v1"
    urls = {"health": f"{base}/health", "workers": f"{base}/workers"}
    for c in services:
        if c.service in workers and c.state == "running" and c.ports:
            port = facts.port_map.get(c.ports[0], c.ports[0])
            urls[c.service] = f"http://127.0.0.1:{port}/health"
    answers = _probe_all(probes, urls)
    seen = Observation(state)
    _judge_api(seen, answers["health"], facts.instance_id, reasons)
    if seen.api_responding is False:
        _explain_silent_api(probes, services, reasons)
    _judge_workers(seen, answers, services, facts, reasons)
    answered = {key for key, answer in answers.items() if _ok(answer) and key in urls}
    answered = (answered & set(workers)) | ({"backend"} if seen.api_ok else set())
    problems = container_problems(services, short_lived=short_lived, answered=answered)
    seen.reasons = problems + reasons
    if state != "paused":
        seen.state = verdict(seen.reasons)
    return seen


def _ok(answer: Any) -> bool:
    return getattr(answer, "status", None) == 200


def _probe_all(probes: GateProbes, urls: Mapping[str, str]) -> dict[str, Any]:
    """url key -> HttpAnswer, or the ProbeError when there was no answer."""
    # The probes here, not at the top: they load httpx, and `list` imports this module
    # without ever probing (only `status` does).
    from ktrdr.cli.sandbox.gate.probes import ProbeError

    def get(url: str) -> Any:
        try:
            return probes.http_get(url)
        except ProbeError as e:
            return e

    # Here, not at the top: `list` imports this module and never probes.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        futures = {key: pool.submit(get, url) for key, url in urls.items()}
        return {key: future.result() for key, future in futures.items()}


def _judge_api(seen: Observation, answer: Any, instance_id: str, reasons: list[str]) -> None:
    # here: the gate's checks and probes load httpx, which `list` never needs
    from ktrdr.cli.sandbox.gate.checks import backend_verdict
    from ktrdr.cli.sandbox.gate.probes import ProbeError

    if isinstance(answer, ProbeError):
        seen.api_responding = False
        reasons.append(f"API not responding: {answer}")
        return
    seen.api_responding = True
    body = answer.body if isinstance(answer.body, dict) else {}
    seen.api_instance_id = str(body["instance_id"]) if body.get("instance_id") else None
    passed, detail, _ = backend_verdict(answer, instance_id)
    seen.api_ok = passed
    if not passed:
        reasons.append(f"API: {detail}")


def _explain_silent_api(probes: GateProbes, services: Sequence[Any], reasons: list[str]) -> None:
    """A hot reload of a broken edit keeps the backend container running with a traceback at
    the end of its log: name the exception, as the gate does."""
    from ktrdr.cli.sandbox.gate.checks import python_error_at_end  # here: as in _judge_api

    backend = [c for c in services if c.service == "backend" and c.state == "running"]
    if not backend:
        return
    try:
        error = python_error_at_end(probes.logs(backend[0].name, 200))
    except Exception:  # the log is a hint only
        return
    if error:
        reasons[-1] += f"; the backend's log ends in {error}"


def _judge_workers(
    seen: Observation,
    answers: Mapping[str, Any],
    services: Sequence[Any],
    facts: StackFacts,
    reasons: list[str],
) -> None:
    """A worker counts when the backend lists it as reachable AND it answered its own /health
    just now: the backend notices a stopped worker only after its heartbeat timeout."""
    from ktrdr.cli.sandbox.gate.probes import HttpAnswer  # here: as in _judge_api

    workers = facts.stack.worker_services
    running = {c.service for c in services if c.state == "running"}
    alive = {
        service
        for service in workers
        if isinstance(answers.get(service), HttpAnswer) and answers[service].status == 200
    }
    silent = sorted(s for s in workers if s in running and s not in alive)
    seen.silent_workers = silent
    reasons.extend(f"{service} not answering its /health" for service in silent)
    listed = answers["workers"]
    if not seen.api_responding or not isinstance(listed, HttpAnswer):
        return
    if listed.status != 200 or not isinstance(listed.body, list):
        reasons.append(f"/api/v1/workers answered HTTP {listed.status}")
        return
    counts: dict[str, int] = {}
    for worker in listed.body:
        if not isinstance(worker, dict) or worker.get("status") == "unreachable":
            continue
        service = urlparse(str(worker.get("endpoint") or "")).hostname or ""
        if service in workers and service not in alive:
            continue  # registered, but gone: the backend has not noticed yet
        kind = str(worker.get("worker_type"))
        counts[kind] = counts.get(kind, 0) + 1
    seen.workers = counts
    short = [
        f"{counts.get(kind, 0)} of {wanted} {kind}"
        for kind, wanted in sorted(facts.stack.expected_workers.items())
        if counts.get(kind, 0) < wanted
    ]
    if short:
        reasons.append("workers registered: " + ", ".join(short))

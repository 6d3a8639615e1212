"""What the Startability Gate gathers once it has failed: the containers at that moment (and
whether the instance was taken down under it), and the failing service's log tail or, when it
logged nothing, the engine's view of its container."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.probes import GateProbes

LOG_TAIL_LINES = 40
# A server that exits 0 (or on SIGTERM/SIGKILL) was stopped rather than crashed: `compose
# down` stops every container before removing them, so look again for a moment.
STOP_EXIT_CODES = (0, 137, 143)
VANISH_POLLS = 6
VANISH_POLL_S = 0.5


@dataclass(frozen=True)
class Diagnosis:
    """The failure as reported: a destroyed instance replaces the failure first seen."""

    containers: list[ContainerState]
    failure: str
    failing_service: str | None
    log_tail: list[str] = field(default_factory=list)
    engine_view: list[str] = field(default_factory=list)


def diagnose(
    probes: GateProbes,
    *,
    known: list[ContainerState],
    failure: str,
    failing_service: str | None,
    sleep: Callable[[float], None],
) -> Diagnosis:
    """Look at the stack once more after `failure`; `known` is the gate's last snapshot."""
    containers, gone = containers_at_failure(probes, known, failing_service, sleep)
    if gone:
        failure = (
            f"the instance's containers were removed while the gate ran ({len(gone)} of "
            f"{len(known)} gone, e.g. {gone[0]}): it was destroyed or taken down from "
            "outside (`ktrdr sandbox destroy`/`down`, `docker compose down`), not a crash"
            + (f" of {failing_service}" if failing_service else "")
        )
        failing_service = None
    container = next((c.name for c in containers if c.service == failing_service), None)
    if container is None:
        return Diagnosis(containers, failure, failing_service)
    log_tail, engine_view = cause(probes, container)
    return Diagnosis(containers, failure, failing_service, log_tail, engine_view)


def containers_at_failure(
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


def cause(probes: GateProbes, container: str) -> tuple[list[str], list[str]]:
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

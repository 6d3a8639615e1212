"""`ktrdr sandbox status`: identity, slot, containers and a fresh look at the API and workers
of one instance (registered or not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE, load_or_fallback, problem
from ktrdr.cli.sandbox.engine import handle as docker_engine
from ktrdr.cli.sandbox.engine.lost_homes import home_is_gone
from ktrdr.cli.sandbox.engine.queries import LIST_TIMEOUT
from ktrdr.cli.sandbox.gate.health import StackFacts, observe
from ktrdr.cli.sandbox.gate.probes import DockerProbes
from ktrdr.cli.sandbox.gate.report import last_gate, read_report
from ktrdr.cli.sandbox.home.directory import home_id, ktrdr_home
from ktrdr.cli.sandbox.instances.locate import Instance, locate
from ktrdr.cli.sandbox.overview.listing import (
    containers_snapshot,
    containers_snapshot_and_why,
    entry_status,
    local_ports,
    short_lived,
    stale_reason,
)
from ktrdr.cli.sandbox.remote.instance import companions
from ktrdr.cli.sandbox.slots.ports import local_ports as reached_ports
from ktrdr.cli.sandbox.slots.ports import port_map, ports_for_slot

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.gate.probes import GateProbes
    from ktrdr.cli.sandbox.home.registry import Entry


@dataclass
class InstanceStatus:
    instance_id: str
    slot: int
    path: Path
    registered: bool
    status: str
    kind: str | None = None
    branch: str | None = None
    created_at: str | None = None
    stale_reason: str | None = None
    containers_total: int | None = None
    containers_running: int | None = None
    containers_healthy: int | None = None
    reasons: list[str] = field(default_factory=list)  # why not `running`, observed just now
    live: dict[str, Any] | None = None  # API, workers (health.observe), last gate
    context: str | None = None  # the Docker context (None: the default engine)
    forward: int | None = None  # a remote instance's block of local forward ports

    def to_json(self) -> dict[str, Any]:
        ports = reached_ports(self.slot, self.forward)
        return {
            "instance_id": self.instance_id,
            "engine": docker_engine.label(self.context),
            "slot": self.slot,
            "path": str(self.path),
            "registered": self.registered,
            "status": self.status,
            "kind": self.kind,
            "branch": self.branch,
            "created_at": self.created_at,
            "stale_reason": self.stale_reason,
            "reasons": self.reasons,
            "ports": ports.all_ports(),
            "urls": ports.urls(),
            "containers": {
                "total": self.containers_total,
                "running": self.containers_running,
                "healthy": self.containers_healthy,
            },
            **(self.live or {}),
        }


def instance_status(
    name: str | None, *, cwd: Path, probes: GateProbes | None = None
) -> InstanceStatus:
    """Identity, slot and Docker state of one instance (by name, or the one containing cwd).
    An unregistered `.env.sandbox` still reports what the file says."""
    instance = locate(
        name, cwd, name_hint="pass NAME, or see `ktrdr sandbox list`", unregistered=True
    )
    if instance.entry is None:
        return _unregistered_status(instance)
    entry = instance.entry
    snapshot, engine_problem = containers_snapshot_and_why(instance.engine)
    result = InstanceStatus(
        instance_id=entry.instance_id,
        slot=entry.slot,
        path=entry.root,
        registered=True,
        status=entry_status(entry, snapshot),
        kind=entry.kind,
        branch=entry.branch,
        created_at=entry.created_at,
        stale_reason=stale_reason(entry),
        context=instance.context,
        forward=instance.forward_index,
    )
    if result.status == "unknown" and engine_problem:
        result.reasons = [engine_problem]
    if result.status in ("running", "starting", "degraded", "paused"):
        _observe(result, instance, snapshot, probes)
    else:
        _count_containers(result, entry.root, snapshot)
    if stale_reason(entry) is None:
        # A missing file is an old branch (`up` says so); a broken one is an edit to fix.
        broken = problem(entry.root) if (entry.root / COMPOSE_FILE).exists() else None
        if broken:  # `up` would refuse it: say so here, not only then
            result.reasons.append(broken)

        result.live = {**(result.live or {}), "last_gate": last_gate(read_report(entry.root))}
        _add_background_start(result, entry)
    if instance.remote:
        result.live = {**(result.live or {}), **companions(instance)}
    return result


START_KIND = "start"  # the detached `up` an agent tool's hook launches (agent_tools/background)


def _add_background_start(result: InstanceStatus, entry: Entry) -> None:
    """The `up` an agent tool's hook started in the background for this instance (not for an
    earlier one of that id), read from its record here: status sits below agent_tools."""
    from ktrdr.cli.sandbox.home import owned_process

    record = owned_process.load(owned_process.state_dir(entry.instance_id), START_KIND)
    if record is None or record.details.get("created_at") != entry.created_at:
        return
    start = {
        "running": owned_process.alive(record),
        "pid": record.pid,
        "started_at": record.details.get("started_at"),
        "log": record.log_path,
        "last_line": _last_line(Path(record.log_path)),
    }
    result.live = {**(result.live or {}), "background_start": start}


def _last_line(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _observe(
    result: InstanceStatus,
    instance: Instance,
    snapshot: dict[str, list[Any]] | None,
    probes: GateProbes | None,
) -> None:
    """The state from fresh probes of the API and each worker (health.observe); containers
    whose service did not answer just now are not counted healthy, whatever Docker says."""
    entry = instance.require_entry()

    # No readable compose file: no workers expected, the API is judged alone.
    stack = load_or_fallback(entry.root)
    local = local_ports(entry)
    facts = StackFacts(
        entry.instance_id, local.api, stack, port_map(ports_for_slot(entry.slot), local)
    )
    containers = (snapshot or {}).get(entry.instance_id, [])
    if probes is not None:
        seen = observe(containers, facts, probes)
    else:
        real = DockerProbes(instance.engine, entry.instance_id, engine_timeout=LIST_TIMEOUT)
        try:
            seen = observe(containers, facts, real)
        finally:
            real.close()
    result.status = seen.state
    result.reasons = seen.reasons
    result.live = {k: v for k, v in seen.to_json().items() if k not in ("status", "reasons")}
    silent = set(seen.silent_workers) | (set() if seen.api_ok else {"backend"})
    _count_containers(result, entry.root, snapshot, not_answering=silent)


def _count_containers(
    result: InstanceStatus,
    root: Path,
    snapshot: dict[str, list[Any]] | None,
    *,
    not_answering: set[str] | frozenset[str] = frozenset(),
) -> None:
    if snapshot is None:
        return  # counts stay None: "Docker not reachable"
    found = snapshot.get(result.instance_id, [])
    not_counted = short_lived(root, found)
    containers = [c for c in found if c.service not in not_counted]
    result.containers_total = len(containers)
    result.containers_running = sum(1 for c in containers if c.state == "running")
    result.containers_healthy = sum(
        1 for c in containers if c.healthy and c.service not in not_answering
    )


def _unregistered_status(instance: Instance) -> InstanceStatus:
    values = instance.env

    owner, owner_home = values.get("KTRDR_OWNER", ""), values.get("KTRDR_OWNER_HOME", "")
    reason = "not in the registry: run `ktrdr sandbox init` here"
    if owner and owner != home_id():
        # Its containers are that home's: this home neither counts nor touches them.

        reason = f"belongs to KTRDR_HOME {owner_home or owner}: run with KTRDR_HOME set to it"
        if home_is_gone(owner, owner_home):
            again = " (recreated with a new id)" if Path(owner_home) == ktrdr_home() else ""
            reason = (
                f"belongs to home {owner}, whose directory {owner_home} is gone{again}: "
                f"`ktrdr sandbox adopt {instance.root}` takes it into this home, or "
                f"`ktrdr sandbox doctor --remove-lost {owner}` removes its stack"
            )
    result = InstanceStatus(
        instance_id=instance.instance_id,
        slot=instance.slot,
        path=instance.root,
        registered=False,
        status="unregistered",
        stale_reason=reason,
    )
    _count_containers(result, instance.root, containers_snapshot(instance.engine))
    return result

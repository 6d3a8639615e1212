"""The read-only view of instances behind `ktrdr sandbox list` and `status`: registry entries
plus their Docker state from one query. Kept apart from overview/status.py so `list` imports
only what it needs (it runs on every agent poll)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.stack_file import load_or_fallback
from ktrdr.cli.sandbox.engine import handle as docker_engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.gate.health import container_problems, docker_state
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.slots import ports
from ktrdr.cli.sandbox.slots.ports import SlotPorts
from ktrdr.cli.sandbox.stack import docker_access
from ktrdr.envfile import SANDBOX_ENV_FILENAME


def stale_reason(entry: Entry) -> str | None:
    if entry.is_dead_claim():
        return f"create did not finish (process {entry.pid} is gone)"
    if entry.state == "creating":
        return None
    if not entry.root.is_dir():
        return f"{entry.path} is gone"
    if not (entry.root / SANDBOX_ENV_FILENAME).is_file():
        return f"{entry.root / SANDBOX_ENV_FILENAME} is gone"
    return None


def containers_snapshot(engine: Engine) -> dict[str, list[Any]] | None:
    """All instances' containers on `engine` from ONE query, or None when it does not answer."""
    return containers_snapshot_and_why(engine)[0]


def containers_snapshot_and_why(
    engine: Engine,
) -> tuple[dict[str, list[Any]] | None, str | None]:
    """(snapshot, None), or (None, why the engine could not be asked)."""
    try:  # no separate engine ping: an unreachable engine raises DockerUnavailableError
        grouped: dict[str, list[Any]] = docker_access.docker().containers_by_instance(engine)
    except SandboxError as e:
        return None, str(e)
    return grouped, None


def engines_of(entries: Iterable[Entry]) -> dict[str | None, Engine]:
    """One Engine per context the entries live on, as the home recorded it."""
    engines: dict[str | None, Engine] = {}
    for entry in entries:
        if entry.context not in engines:
            engines[entry.context] = docker_engine.recorded(entry.context, forward=entry.forward)
    return engines


def snapshots_by_engine(
    entries: Iterable[Entry],
) -> dict[str | None, tuple[dict[str, list[Any]] | None, str | None]]:
    """`containers_snapshot_and_why` of every engine the entries live on (by context), asked in
    parallel: one slow or lost remote engine costs its own timeout once, and leaves the other
    engines' instances known."""
    engines = engines_of(entries)
    if len(engines) <= 1:
        return {context: containers_snapshot_and_why(e) for context, e in engines.items()}
    from concurrent.futures import ThreadPoolExecutor  # threads: only for several engines

    with ThreadPoolExecutor(max_workers=min(8, len(engines))) as pool:
        answers = pool.map(containers_snapshot_and_why, engines.values())
        return dict(zip(engines, answers, strict=True))


def short_lived(root: Path, containers: list[Any]) -> frozenset[str]:
    """The services of the instance's compose file whose containers do not count towards its
    state (StackFile.short_lived); the file is read only when there are containers to judge."""
    if not containers:
        return frozenset()
    return load_or_fallback(root).short_lived


def entry_status(entry: Entry, snapshot: dict[str, list[Any]] | None) -> str:
    """running / starting / degraded / paused / stopped / unknown from container states, or
    the registry's word (stale, creating, destroying)."""
    if stale_reason(entry) is not None:
        return "stale"
    if entry.state != "ready":
        return entry.state
    if snapshot is None:
        return "unknown"
    containers = snapshot.get(entry.instance_id, [])
    return docker_state(containers, short_lived=short_lived(entry.root, containers))


@dataclass
class InstanceRow:
    entry: Entry
    status: str
    reasons: list[str]  # why not `running`, from container states (list probes nothing else)

    def shown_status(self) -> str:
        """The STATUS cell: the word, plus the first reason when degraded or paused."""
        if not self.reasons or self.status not in ("degraded", "starting", "paused"):
            return self.status
        more = f" +{len(self.reasons) - 1}" if len(self.reasons) > 1 else ""
        return f"{self.status} ({self.reasons[0]}{more})"

    @property
    def engine(self) -> str:
        return docker_engine.label(self.entry.context)

    def to_json(self) -> dict[str, Any]:
        ports = local_ports(self.entry)
        return {
            **self.entry.to_json(),
            "engine": self.engine,
            "status": self.status,
            "reasons": self.reasons,
            "api_port": ports.api,
            "api_url": ports.urls()["api"],
        }


@dataclass
class Listing:
    rows: list[InstanceRow]
    engine_problem: str | None = None  # why STATUS is `unknown`


def list_instances() -> list[InstanceRow]:
    return list_instances_and_engine().rows


def list_instances_and_engine() -> Listing:
    """Every registered instance with its status. Read-only: never writes the registry."""
    entries = registry.load()
    by_engine = snapshots_by_engine(entries.values())
    rows = []
    for entry in sorted(entries.values(), key=lambda e: (e.context or "", e.slot, e.instance_id)):
        snapshot = by_engine[entry.context][0]
        status = entry_status(entry, snapshot)
        containers = (snapshot or {}).get(entry.instance_id, [])
        reasons = (
            container_problems(containers, short_lived=short_lived(entry.root, containers))
            if status in ("degraded", "starting", "paused")
            else []
        )
        rows.append(InstanceRow(entry, status, reasons))
    problems = [why for _, why in by_engine.values() if why]
    return Listing(rows, "; ".join(problems) or None)


def local_ports(entry: Entry) -> SlotPorts:
    """The ports this machine reaches the instance on (a remote one's forwarded ends)."""
    return ports.local_ports(entry.slot, entry.forward)


def running_entries() -> list[Entry]:
    """Registered instances of this home with running containers (one query per engine)."""
    entries = registry.load().values()
    by_engine = snapshots_by_engine(entries)
    problems = [why for _, why in by_engine.values() if why]
    if problems:
        raise SandboxError(f"cannot tell which instances run: {problems[0]}")
    return [
        entry
        for entry in entries
        if any(
            c.state == "running"
            for c in (by_engine[entry.context][0] or {}).get(entry.instance_id, [])
        )
    ]

"""The read-only view of instances behind `ktrdr sandbox list` and `status`: registry entries
plus their Docker state from one query. Kept apart from instances.py so `list` imports only what
it needs (it runs on every agent poll)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ktrdr.cli.sandbox import registry
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.ports import ports_for_slot
from ktrdr.cli.sandbox.registry import Entry
from ktrdr.envfile import SANDBOX_ENV_FILENAME

ONE_SHOT_SERVICES = frozenset({"migrate", "e2e-tests"})


def compose_module() -> ModuleType:
    """The compose module, imported lazily (it is only needed when Docker is involved)."""
    from ktrdr.cli.sandbox import compose

    return compose


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


def containers_snapshot() -> dict[str, list[Any]] | None:
    """All instances' containers from ONE Docker query, or None when no engine answers."""
    try:  # no separate engine ping: an unreachable engine raises DockerUnavailableError
        grouped: dict[str, list[Any]] = compose_module().containers_by_instance()
    except SandboxError:
        return None
    return grouped


def docker_status(containers: list[Any] | None) -> str:
    """running / paused / partial / stopped from container states; one-shot services do not
    count. `paused` when any of the instance's containers is frozen (`up` thaws them)."""
    if containers is None:
        return "unknown"
    services = [c for c in containers if c.service not in ONE_SHOT_SERVICES]
    if any(c.state == "paused" for c in services):
        return "paused"
    running = sum(1 for c in services if c.state == "running")
    if not services or running == 0:
        return "stopped"
    return "running" if running == len(services) else "partial"


def entry_status(entry: Entry, snapshot: dict[str, list[Any]] | None) -> str:
    if stale_reason(entry) is not None:
        return "stale"
    if entry.state != "ready":
        return entry.state
    if snapshot is None:
        return "unknown"
    return docker_status(snapshot.get(entry.instance_id, []))


@dataclass
class InstanceRow:
    entry: Entry
    status: str

    def to_json(self) -> dict[str, Any]:
        ports = ports_for_slot(self.entry.slot)
        return {
            **self.entry.to_json(),
            "status": self.status,
            "api_port": ports.api,
            "api_url": ports.urls()["api"],
        }


def list_instances() -> list[InstanceRow]:
    """Every registered instance with its status. Read-only: never writes the registry."""
    entries = registry.load()
    snapshot = containers_snapshot() if entries else None
    return [
        InstanceRow(entry, entry_status(entry, snapshot))
        for entry in sorted(entries.values(), key=lambda e: (e.slot, e.instance_id))
    ]

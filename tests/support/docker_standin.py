"""Stand-ins for the Docker engine in unit tests: `DockerStandIn` (the `Docker` protocol of
stack/docker_access.py, installed by the `docker` fixture of tests/unit/sandbox/conftest.py), the
`Container` rows it reports, and `StartedStackStandIn` for compose.StartingStack."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base.errors import DockerUnavailableError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.ownership import SlotFacts
from ktrdr.cli.sandbox.stack import compose


@dataclass
class Container:
    service: str
    state: str
    health: str | None = None
    name: str = ""
    instance_id: str = ""
    exit_code: int | None = None
    ports: list[int] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.state == "running" and self.health in (None, "healthy")


@dataclass
class DockerStandIn:
    """Stands in for the Docker engine (the `Docker` protocol of stack/docker_access.py) in unit
    tests, so they do not depend on whether an engine runs on this machine. Real-engine tests
    are marked docker."""

    reachable: bool = True
    containers: dict[str, list[Container]] = field(default_factory=dict)
    leftover: dict[str, list[str]] = field(default_factory=dict)
    downs: list[tuple[str, Path | None, bool]] = field(default_factory=list)
    queries: int = 0
    foreign_checks: list[str] = field(default_factory=list)
    other_homes_slots: dict[int, str] = field(default_factory=dict)
    claimed_only: set[int] = field(default_factory=set)  # of other_homes_slots: marker only
    slot_marks: dict[str, int] = field(default_factory=dict)
    mark_engines: dict[str, str | None] = field(default_factory=dict)  # instance -> context
    published: set[int] = field(default_factory=set)  # ports the engine's containers publish

    def engine_reachable(self, engine: Engine) -> bool:
        return self.reachable

    def containers_by_instance(self, engine: Engine) -> dict[str, list[Any]]:
        if not self.reachable:
            raise DockerUnavailableError("Docker engine not reachable (stand-in)")
        self.queries += 1
        return dict(self.containers)

    def down(self, engine: Engine, instance_id: str, instance: Any, *, volumes: bool) -> None:
        root = instance.root if instance is not None and instance.env else None
        self.downs.append((instance_id, root, volumes))
        self.containers.pop(instance_id, None)

    def slot_facts(self, engine: Engine, instance_id: str) -> SlotFacts:
        if not self.reachable:
            return SlotFacts([], {})
        own = [v.removeprefix("volume ") for v in self.leftover.get(instance_id, [])]
        return SlotFacts(own, dict(self.other_homes_slots), frozenset(self.claimed_only))

    def slots_of_other_homes(self, engine: Engine) -> dict[int, str]:
        return self.slot_facts(engine, "").other_homes

    def mark_slot(
        self, engine: Engine, instance_id: str, slot: int, *, replace: bool = False
    ) -> bool:
        if not self.reachable:
            return False
        self.slot_marks[instance_id] = slot
        self.mark_engines[instance_id] = engine.context
        return True

    def unmark_slot(self, engine: Engine, instance_id: str) -> None:
        self.slot_marks.pop(instance_id, None)

    def ensure_engine(self, engine: Engine) -> None:
        if not self.reachable:
            raise DockerUnavailableError("Docker engine not reachable (stand-in)")

    def published_ports(self, engine: Engine) -> set[int]:
        return set(self.published)

    def engine_socket_exists(self, engine: Engine) -> bool:
        return True  # an engine is on this (stand-in) machine: unknown is never "no containers"

    def engine_host(self, engine: Engine) -> str:
        return "unix:///stand-in/docker.sock"

    def project_of(self, env: dict[str, str]) -> str:
        return compose.project_of(env)

    def refuse_foreign(
        self, engine: Engine, instance_id: str, project: str, *, checkout: Path, action: str
    ) -> None:
        self.foreign_checks.append(project)

    def leftovers(self, engine: Engine, instance_id: str) -> list[str]:
        return self.leftover.get(instance_id, [])

    def ps(self, engine: Engine, instance_id: str, root: Path | None = None) -> list[Container]:
        if not self.reachable:
            raise DockerUnavailableError("Docker engine not reachable (stand-in)")
        return list(self.containers.get(instance_id, []))


class StartedStackStandIn:
    """Stands in for compose.StartingStack: there is no engine in unit tests."""

    def done(self) -> bool:
        return True

    def error(self) -> str | None:
        return None

    def wait(self) -> None:
        pass

    def cancel(self) -> None:
        pass

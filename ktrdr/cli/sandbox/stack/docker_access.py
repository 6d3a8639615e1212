"""The one seam between the instance transactions and the engine.

Instance transactions (create, init, status, destroy, prune) and `list` ask the engine only
through the `Docker` protocol, obtained from `docker()` at call time; unit tests put one typed
stand-in in its place (tests/support/docker_standin.py) and run without an engine. `EngineDocker`
is the real one: each method is the function of the same name in engine/queries.py,
engine/ownership.py or stack/compose.py. The last two are imported in the methods that use them:
`list` asks only queries, and compose would load the YAML reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ktrdr.cli.sandbox.engine import queries

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.engine.handle import Engine
    from ktrdr.cli.sandbox.engine.ownership import SlotFacts
    from ktrdr.cli.sandbox.engine.queries import ContainerState
    from ktrdr.cli.sandbox.instances.locate import Instance


class Docker(Protocol):
    """What the instance transactions ask of an engine."""

    def engine_reachable(self, engine: Engine) -> bool: ...
    def engine_host(self, engine: Engine) -> str: ...
    def engine_socket_exists(self, engine: Engine) -> bool: ...
    def ensure_engine(self, engine: Engine) -> None: ...
    def published_ports(self, engine: Engine) -> set[int]: ...
    def containers_by_instance(self, engine: Engine) -> dict[str, list[ContainerState]]: ...
    def ps(
        self, engine: Engine, instance_id: str, root: Path | None = None
    ) -> list[ContainerState]: ...
    def slot_facts(self, engine: Engine, instance_id: str) -> SlotFacts: ...
    def mark_slot(
        self, engine: Engine, instance_id: str, slot: int, *, replace: bool = False
    ) -> bool: ...
    def unmark_slot(self, engine: Engine, instance_id: str) -> None: ...
    def leftovers(self, engine: Engine, instance_id: str) -> list[str]: ...
    def refuse_foreign(
        self, engine: Engine, instance_id: str, project: str, *, checkout: Path, action: str
    ) -> None: ...
    def project_of(self, env: Mapping[str, str]) -> str: ...
    def down(
        self, engine: Engine, instance_id: str, instance: Instance | None, *, volumes: bool
    ) -> None: ...


class EngineDocker:
    """The real engine, through the docker CLI."""

    def engine_reachable(self, engine: Engine) -> bool:
        return queries.engine_reachable(engine)

    def engine_host(self, engine: Engine) -> str:
        return queries.engine_host(engine)

    def engine_socket_exists(self, engine: Engine) -> bool:
        return queries.engine_socket_exists(engine)

    def ensure_engine(self, engine: Engine) -> None:
        queries.ensure_engine(engine)

    def published_ports(self, engine: Engine) -> set[int]:
        return queries.published_ports(engine)

    def containers_by_instance(self, engine: Engine) -> dict[str, list[ContainerState]]:
        return queries.containers_by_instance(engine)

    def ps(
        self, engine: Engine, instance_id: str, root: Path | None = None
    ) -> list[ContainerState]:
        return queries.ps(engine, instance_id, root)

    def slot_facts(self, engine: Engine, instance_id: str) -> SlotFacts:
        from ktrdr.cli.sandbox.engine import ownership

        return ownership.slot_facts(engine, instance_id)

    def mark_slot(
        self, engine: Engine, instance_id: str, slot: int, *, replace: bool = False
    ) -> bool:
        from ktrdr.cli.sandbox.engine import ownership

        return ownership.mark_slot(engine, instance_id, slot, replace=replace)

    def unmark_slot(self, engine: Engine, instance_id: str) -> None:
        from ktrdr.cli.sandbox.engine import ownership

        ownership.unmark_slot(engine, instance_id)

    def leftovers(self, engine: Engine, instance_id: str) -> list[str]:
        from ktrdr.cli.sandbox.engine import ownership

        return ownership.leftovers(engine, instance_id)

    def refuse_foreign(
        self, engine: Engine, instance_id: str, project: str, *, checkout: Path, action: str
    ) -> None:
        from ktrdr.cli.sandbox.engine import ownership

        ownership.refuse_foreign(engine, instance_id, project, checkout=checkout, action=action)

    def project_of(self, env: Mapping[str, str]) -> str:
        from ktrdr.cli.sandbox.stack import compose

        return compose.project_of(env)

    def down(
        self, engine: Engine, instance_id: str, instance: Instance | None, *, volumes: bool
    ) -> None:
        from ktrdr.cli.sandbox.stack import compose

        compose.down(engine, instance_id, instance, volumes=volumes)


def docker() -> Docker:
    """The engine the transactions ask (a stand-in in unit tests)."""
    return EngineDocker()

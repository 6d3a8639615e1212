"""What an instance's stack needs on an engine that cannot see this machine's disk: no bind
mounts. Every bind source of docker-compose.sandbox.yml becomes a named volume at the same
target, filled by a tar stream (remote/volume_push.py), and the live source is kept in sync by
`docker compose watch`.

The binds are read from the resolved compose file (`docker compose config`, which runs here
and needs no engine), so this module holds no second list of mounts. A bind source
- inside the checkout becomes an *instance* volume `<project>_src-<path>` with the stack's
  labels (owner, instance, …) plus Compose's project labels: `down -v` (with the override
  file) and removal by label take it like the stack's own volumes;
- inside the shared dir becomes a *shared* volume `ktrdr-shared-<home id>-<sub>` of this home on
  that engine (labels ktrdr.owner and ktrdr.shared-data=1, no instance label): external to
  every project, so no instance's teardown removes it; read-only where the bind was;
- anywhere else is refused (it could not exist on the other machine).
A checkout source mounted read-write by some service (./ktrdr) is *live*: `compose watch`
syncs it into one service's container; the volume is shared, so every service sees the edit.

The override is written to `<root>/.sandbox/compose.remote.yml`; every compose command of a
remote instance passes it as an extra `-f` (compose merges service volumes by target).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.stack_file import REMOTE_OVERRIDE_FILE
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.stack import compose

SHARED_LABEL = "ktrdr.shared-data"
OWNER_LABEL = "ktrdr.owner"
OWNER_HOME_LABEL = "ktrdr.owner-home"
INSTANCE_LABEL = "ktrdr.instance"
TEST_LABEL = "ktrdr.test"
E2E_SERVICE = "e2e-tests"
E2E_RESULTS_KEY = "e2e-results"
E2E_RESULTS_TARGET = "/results"  # = e2e.CONTAINER_RESULTS (a test keeps them equal)
WATCH_KIND = "watch"
WATCH_READY_TIMEOUT = 60.0
WATCH_IGNORE = ("**/__pycache__", "**/*.pyc", "**/.*.ktrdr-tmp")
CONFIG_TIMEOUT = 60.0


@dataclass(frozen=True)
class SyncedVolume:
    key: str  # the volume's key in the override, e.g. src-ktrdr, shared-data
    name: str  # its name on the engine
    source: Path  # the local directory it mirrors
    shared: bool  # a home's shared-data volume (external) rather than the instance's
    mirror: bool  # a push makes it hold exactly the local files (read-only everywhere)
    live: bool = False  # kept in sync by compose watch while the instance is up
    targets: dict[str, tuple[str, bool]] = field(default_factory=dict)  # service -> (target, ro)


@dataclass(frozen=True)
class RemotePlan:
    root: Path
    project: str
    owner: str
    image: str  # the image the helper containers run (the app image, which has Python)
    instance_labels: dict[str, str]
    volumes: list[SyncedVolume]
    watch_service: str | None
    override_path: Path
    builder_service: str | None = None  # the service whose build section makes `image`
    engine: Engine = field(default_factory=Engine)  # where the volumes and helpers are

    def instance_volumes(self) -> list[SyncedVolume]:
        return [v for v in self.volumes if not v.shared]

    def shared_volumes(self) -> list[SyncedVolume]:
        return [v for v in self.volumes if v.shared]

    @property
    def results_volume(self) -> str:
        return f"{self.project}_{E2E_RESULTS_KEY}"

    def shared_labels(self) -> dict[str, str]:
        keep = (OWNER_LABEL, OWNER_HOME_LABEL, TEST_LABEL)
        return {**{k: v for k, v in self.instance_labels.items() if k in keep}, SHARED_LABEL: "1"}

    def volume_labels(self, key: str) -> dict[str, str]:
        """An instance volume's labels: the stack's, plus Compose's, so Compose adopts it."""
        return {
            **self.instance_labels,
            "com.docker.compose.project": self.project,
            "com.docker.compose.volume": key,
        }


# --- the plan and the override ----------------------------------------------------------------


def resolved_config(engine: Engine, root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """`docker compose config --format json` of the instance with every profile (local)."""

    argv = [
        *compose.compose_argv(engine, root, env, override=False),
        *("--profile", "*", "config", "--format", "json"),
    ]
    result = proc.run(
        argv,
        cwd=root,
        env=compose.compose_env(engine, env, root),
        timeout=CONFIG_TIMEOUT,
        what="reading the compose file (docker compose config)",
    )
    try:
        config = json.loads(result.stdout)
    except ValueError as e:
        raise SandboxError(f"docker compose config printed no JSON: {result.stdout[:200]}") from e
    return dict(config)


def plan_for(
    root: Path,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    *,
    engine: Engine | None = None,
) -> RemotePlan:
    """Which bind becomes which volume, from the resolved config (see the module docstring)."""
    project = str(config.get("name") or env.get("COMPOSE_PROJECT_NAME", ""))
    labels = _instance_labels(config)
    owner = labels.get(OWNER_LABEL) or env.get("KTRDR_OWNER", "")
    shared_dir = (
        Path(env.get("KTRDR_SHARED_DIR", "")).resolve() if env.get("KTRDR_SHARED_DIR") else None
    )
    found: dict[Path, SyncedVolume] = {}
    images: dict[str, int] = {}
    for service, spec in sorted(dict(config.get("services", {})).items()):
        for mount in spec.get("volumes", []) or []:
            if mount.get("type") != "bind":
                continue
            source = Path(mount["source"]).resolve()
            volume = found.get(source) or _volume_for(
                source, root.resolve(), shared_dir, project, owner, service, found
            )
            volume.targets[service] = (str(mount["target"]), bool(mount.get("read_only")))
            found[source] = volume
            images[str(spec.get("image", ""))] = images.get(str(spec.get("image", "")), 0) + 1
    volumes = [_settled(v) for v in found.values()]
    image = max(sorted(images), key=lambda i: images[i]) if images else ""
    return RemotePlan(
        root=root,
        project=project,
        owner=owner,
        image=image,
        instance_labels=labels,
        volumes=volumes,
        watch_service=_watch_service(volumes, config),
        override_path=root / REMOTE_OVERRIDE_FILE,
        builder_service=next(
            (
                name
                for name, spec in sorted(dict(config.get("services", {})).items())
                if spec.get("build") and spec.get("image") == image
            ),
            None,
        ),
        engine=engine or Engine(),
    )


def override_for(engine: Engine, root: Path, env: Mapping[str, str]) -> RemotePlan:
    """Write the instance's remote override (`<root>/.sandbox/compose.remote.yml`) from its
    resolved config; returns the plan the push and watch functions take."""

    config = resolved_config(engine, root, env)
    plan = plan_for(root, env, config, engine=engine)
    plan.override_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(plan.override_path, override_text(plan), mode=0o644)
    return plan


def override_text(plan: RemotePlan) -> str:
    """The override as YAML (`$` escaped from Compose's interpolation)."""
    services: dict[str, dict[str, Any]] = {}
    for volume in plan.volumes:
        for service, (target, read_only) in sorted(volume.targets.items()):
            entry = {
                "type": "volume",
                "source": volume.key,
                "target": target,
                "read_only": read_only,
                "volume": {"nocopy": True},
            }
            services.setdefault(service, {"volumes": []})["volumes"].append(entry)
    if E2E_SERVICE in services:
        results = {"type": "volume", "source": E2E_RESULTS_KEY, "target": E2E_RESULTS_TARGET}
        services[E2E_SERVICE]["volumes"].append(results)
    for volume in plan.volumes:
        if volume.live and plan.watch_service is not None:
            target = volume.targets[plan.watch_service][0]
            rule = {"action": "sync", "path": str(volume.source), "target": target}
            services[plan.watch_service]["develop"] = {
                "watch": [{**rule, "ignore": list(WATCH_IGNORE)}]
            }

    document = {"services": services, "volumes": _volume_declarations(plan)}
    header = (
        "# Generated by `ktrdr sandbox` for an instance on a remote engine (remote/stack.py):\n"
        "# each bind mount of docker-compose.sandbox.yml is a named volume here. Do not edit.\n"
    )
    return header + yaml.safe_dump(_escaped(document), sort_keys=False, width=100)


def _volume_declarations(plan: RemotePlan) -> dict[str, Any]:
    declared: dict[str, Any] = {}
    for volume in plan.volumes:
        if volume.shared:
            declared[volume.key] = {"name": volume.name, "external": True}
        else:
            declared[volume.key] = {"name": volume.name, "labels": plan.instance_labels}
    if any(E2E_SERVICE in v.targets for v in plan.volumes):
        declared[E2E_RESULTS_KEY] = {"name": plan.results_volume, "labels": plan.instance_labels}
    return declared


def _instance_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """The stack's own labels, as the compose file puts them on its volumes."""
    for spec in dict(config.get("volumes", {})).values():
        labels = dict(spec.get("labels") or {})
        if INSTANCE_LABEL in labels:
            return {str(k): str(v) for k, v in labels.items()}
    raise SandboxError(
        "the compose file declares no volume with the instance's labels, so the remote volumes "
        "could not be labelled like the stack: check docker-compose.sandbox.yml"
    )


def _volume_for(
    source: Path,
    root: Path,
    shared_dir: Path | None,
    project: str,
    owner: str,
    service: str,
    taken: Mapping[Path, SyncedVolume],
) -> SyncedVolume:
    if source.is_relative_to(root):
        key = _unique(f"src-{_slug(source.relative_to(root).as_posix())}", taken)
        return SyncedVolume(key, f"{project}_{key}", source, shared=False, mirror=True)
    if shared_dir is not None and source.is_relative_to(shared_dir):
        sub = _slug(source.relative_to(shared_dir).as_posix()) or "root"
        key = _unique(f"shared-{sub}", taken)
        return SyncedVolume(key, f"ktrdr-shared-{owner}-{sub}", source, shared=True, mirror=True)
    raise SandboxError(
        f"service {service} bind-mounts {source}, which is neither in the checkout nor in the "
        "shared dir, so it cannot be copied to a remote engine: mount something under the "
        "checkout or KTRDR_SHARED_DIR instead"
    )


def _settled(volume: SyncedVolume) -> SyncedVolume:
    """Read-only everywhere: a push mirrors it. Written by some service: a checkout source is
    live (watch), a shared one is merged into (the engine's own files, e.g. models, stay)."""
    writable = any(not read_only for _, read_only in volume.targets.values())
    if not volume.source.is_dir():
        raise SandboxError(
            f"bind source {volume.source} is not a directory: a remote engine gets directories "
            "only (a volume cannot stand in for one file); mount its directory instead"
        )
    return SyncedVolume(
        volume.key,
        volume.name,
        volume.source,
        volume.shared,
        mirror=not (volume.shared and writable),
        live=writable and not volume.shared,
        targets=volume.targets,
    )


def _watch_service(volumes: Sequence[SyncedVolume], config: Mapping[str, Any]) -> str | None:
    """One long-running service mounting the live volume read-write (the first by name)."""
    services = dict(config.get("services", {}))
    for volume in volumes:
        if not volume.live:
            continue
        writers = sorted(s for s, (_, ro) in volume.targets.items() if not ro)
        steady = [
            s
            for s in writers
            if services[s].get("restart") not in (None, "no") and not services[s].get("profiles")
        ]
        return (steady or writers)[0]
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")


def _unique(key: str, taken: Mapping[Path, SyncedVolume]) -> str:
    keys = {v.key for v in taken.values()}
    candidate, counter = key, 2
    while candidate in keys:
        candidate, counter = f"{key}-{counter}", counter + 1
    return candidate


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value

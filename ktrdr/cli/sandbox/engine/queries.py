"""Every question asked of a Docker engine (an `Engine`) directly, not through compose: the
engine check, labels, an instance's containers. The docker CLI (not the SDK) keeps `list` fast.
Every query feeding a removal or a count filters on this home's `ktrdr.owner` label and the
instance's `ktrdr.instance` label together (`owned_filters`): nothing of another home or
without an owner label is counted, stopped or removed (who owns what: engine/ownership.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import DockerUnavailableError, SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home.directory import home_id

# The labels docker-compose.sandbox.yml (x-labels) puts on every container, volume and network.
INSTANCE_LABEL = "ktrdr.instance"
OWNER_LABEL = "ktrdr.owner"
OWNER_HOME_LABEL = "ktrdr.owner-home"
CHECKOUT_LABEL = "ktrdr.checkout"
SLOT_LABEL = "ktrdr.slot"
TEST_LABEL = "ktrdr.test"
# The labels compose itself adds.
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"

QUERY_TIMEOUT = 30.0
PAUSE_ATTEMPTS = 3
PAUSE_RETRY_DELAY = 0.5  # seconds, times the attempt number
# `list`/`status`: a hung engine says "unknown" within 5 s (with the start-up of the CLI and
# of `docker` itself) instead of hanging.
LIST_TIMEOUT = 4.0


def label_format(key: str) -> str:
    """The `--format` placeholder of one label's value ("" when absent)."""
    return '{{.Label "' + key + '"}}'


# One line per container, tab-separated: a label value may contain commas, so `{{.Labels}}` is
# not parseable; `{{.Label "x"}}` is.
_PS_FORMAT = "\t".join(
    (
        "{{.ID}}",
        "{{.Names}}",
        "{{.State}}",
        "{{.Status}}",
        label_format(INSTANCE_LABEL),
        label_format(SERVICE_LABEL),
        "{{.Ports}}",
    )
)


@dataclass(frozen=True)
class ContainerState:
    name: str
    service: str
    state: str
    health: str | None
    instance_id: str
    exit_code: int | None
    restart_count: int
    image_id: str | None
    ports: list[int] = field(default_factory=list)
    started_at: str | None = None  # RFC 3339 from `docker inspect` (None from `docker ps`)

    @property
    def healthy(self) -> bool:
        """Running, and healthy when the image or compose file defines a healthcheck."""
        return self.state == "running" and self.health in (None, "healthy")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "state": self.state,
            "health": self.health,
            "exit_code": self.exit_code,
            "restart_count": self.restart_count,
            "image_id": self.image_id,
            "ports": list(self.ports),
            "started_at": self.started_at,
        }


# --- the engine check ----------------------------------------------------------------------


def engine_host(engine: Engine) -> str:
    """The engine as messages name it (a context with its endpoint, or DOCKER_HOST)."""
    return engine.describe() or settings.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def cli_installed() -> bool:
    return shutil.which("docker") is not None


def engine_reachable(engine: Engine) -> bool:
    """True when the docker CLI exists and the daemon answers; fast and never raises."""
    if not cli_installed():
        return False
    try:
        argv = engine.argv("version", "--format", "{{.Server.Version}}")
        result = proc.run(argv, timeout=5, check=False)
    except SandboxError:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def compose_plugin_works(engine: Engine) -> bool:
    """Whether `docker compose version` succeeds (Compose v2); SandboxError when it hangs."""
    result = proc.run(engine.argv("compose", "version", "--short"), timeout=15, check=False)
    return result.returncode == 0


def _compose_plugin_answer(engine: Engine) -> bool | SandboxError:
    try:
        return compose_plugin_works(engine)
    except SandboxError as e:  # it hangs: said only when the engine itself answers
        return e


def ensure_engine(engine: Engine) -> None:
    """Raise DockerUnavailableError with one actionable line unless engine + Compose v2 work.
    A pass is trusted for a while (per Engine value, CHECK_TTL); a failure is asked again."""
    if engine.checks.fresh():
        return
    if not cli_installed():
        raise DockerUnavailableError(
            "Docker is not installed: install Docker Engine (`make docker` on Debian/Ubuntu) "
            "and retry"
        )
    reachable, works = proc.concurrently(
        lambda: engine_reachable(engine), lambda: _compose_plugin_answer(engine)
    )
    if not reachable:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {engine_host(engine)}: {engine.retry_hint()}"
        )
    if isinstance(works, SandboxError):
        raise DockerUnavailableError(f"Docker Compose v2 check failed: {works}") from works
    if not works:
        raise DockerUnavailableError(
            "Docker Compose v2 is missing (`docker compose version` failed): install the "
            "compose plugin (`make docker`) and retry"
        )
    engine.checks.passed()


def engine_socket_exists(engine: Engine) -> bool:
    """Whether an engine may be listening here even though the CLI cannot ask it: a local
    socket file, or a remote DOCKER_HOST (which may well hold containers)."""
    if engine.context:
        return True  # a context names an engine that may well hold containers
    host = engine_host(engine)
    if host.startswith("unix://"):
        return os.path.exists(host[len("unix://") :])
    return True


def docker_root_dir(engine: Engine) -> Path | None:
    """Where the engine keeps images and volumes (`docker info`), when it says and it exists."""
    result = proc.run(
        engine.argv("info", "--format", "{{.DockerRootDir}}"), timeout=15, check=False
    )
    root = result.stdout.strip()
    if result.returncode == 0 and root and Path(root).exists():
        return Path(root)
    return None


# --- this home's resources by label --------------------------------------------------------


def owned_filters(instance_id: str | None = None) -> list[str]:
    """Docker `--filter`s matching this home's resources (of one instance when given); docker
    ANDs label filters, so both must match."""
    filters = ["--filter", f"label={OWNER_LABEL}={home_id()}"]
    if instance_id is not None:
        filters += ["--filter", f"label={INSTANCE_LABEL}={instance_id}"]
    return filters


def owned_ids(engine: Engine, list_args: list[str], instance_id: str) -> list[str]:
    """What `docker LIST_ARGS` (e.g. `volume ls -q`) prints for the instance's own resources."""
    result = proc.run(
        engine.argv(*list_args, *owned_filters(instance_id)),
        timeout=QUERY_TIMEOUT,
        what=f"docker {list_args[0]} ls",
    )
    return list(dict.fromkeys(line for line in result.stdout.split() if line))


# --- container states ----------------------------------------------------------------------


def ps(engine: Engine, instance_id: str, root: Path | None = None) -> list[ContainerState]:
    """Every container of the instance owned by this home, in any state (one-off `run`
    containers excluded), with health, exit code, restart count and image id from `docker
    inspect`. `root` is unused: the query goes by label so it works when the compose file is
    gone."""
    del root
    ensure_engine(engine)
    ids = container_ids(engine, instance_id)
    return inspect_containers(engine, ids) if ids else []


def container_ids(engine: Engine, instance_id: str) -> list[str]:
    """The ids of every container of the instance owned by this home, in any state."""
    listed = proc.run(
        engine.argv("ps", "-a", "-q", "--no-trunc", *owned_filters(instance_id)),
        timeout=QUERY_TIMEOUT,
        what="docker ps",
    )
    return listed.stdout.split()


def inspect_containers(engine: Engine, ids: list[str]) -> list[ContainerState]:
    """The state of each container in `ids` that still exists (one `docker inspect`)."""
    inspected = proc.run(
        engine.argv("inspect", "--type", "container", *ids),
        timeout=QUERY_TIMEOUT,
        check=False,
        what="docker inspect",
    )
    # A container removed between the two calls makes inspect exit 1 but still print the rest.
    try:
        raw = json.loads(inspected.stdout or "[]")
    except json.JSONDecodeError as e:
        raise SandboxError(f"docker inspect returned unreadable output: {e}") from e
    states = [_state_from_inspect(item) for item in raw]
    return sorted((s for s in states if s is not None), key=lambda s: (s.service, s.name))


def _state_from_inspect(item: Mapping[str, Any]) -> ContainerState | None:
    config = item.get("Config") or {}
    labels = config.get("Labels") or {}
    if labels.get(ONEOFF_LABEL, "False") == "True":
        return None
    state = item.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    status = str(state.get("Status") or "unknown")
    # A restarting container's ExitCode is the code of the crash that triggered the restart.
    exit_code = state.get("ExitCode") if status in ("exited", "dead", "restarting") else None
    return ContainerState(
        name=str(item.get("Name", "")).lstrip("/"),
        service=str(labels.get(SERVICE_LABEL, "")),
        state=status,
        health=str(health) if health else None,
        instance_id=str(labels.get(INSTANCE_LABEL, "")),
        exit_code=int(exit_code) if exit_code is not None else None,
        restart_count=int(item.get("RestartCount") or 0),
        image_id=str(item.get("Image")) if item.get("Image") else None,
        ports=_inspect_ports(item),
        started_at=str(state.get("StartedAt")) if state.get("StartedAt") else None,
    )


def _inspect_ports(item: Mapping[str, Any]) -> list[int]:
    network = (item.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = network or (item.get("HostConfig") or {}).get("PortBindings") or {}
    ports: set[int] = set()
    for binds in bindings.values():
        for bind in binds or []:
            host_port = str(bind.get("HostPort") or "")
            if host_port.isdigit():
                ports.add(int(host_port))
    return sorted(ports)


def containers_by_instance(engine: Engine) -> dict[str, list[ContainerState]]:
    """This home's containers grouped by instance id: ONE `docker ps` call (for `list`).
    Exit codes come from the status text; restart counts and image ids are not known here.
    No engine pre-check: `list` must stay fast, and a failing `docker ps` says the same. A
    missing CLI or an engine that does not answer within LIST_TIMEOUT raises
    DockerUnavailableError: the state is unknown, never "no containers"."""
    argv = engine.argv("ps", "-a", *owned_filters(), "--format", _PS_FORMAT)
    try:
        result = proc.run(argv, timeout=LIST_TIMEOUT, what="docker ps")
    except proc.CommandFailedError as e:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {engine_host(engine)}: {engine.retry_hint()} "
            f"({proc.stderr_tail(e.result.stderr, 1)})"
        ) from e
    except SandboxError as e:  # no docker CLI, or the engine did not answer in time
        what = (
            f"it did not answer within {LIST_TIMEOUT:g}s" if "did not finish" in str(e) else str(e)
        )
        raise DockerUnavailableError(
            f"Docker engine at {engine_host(engine)} cannot be asked: {what}"
        ) from e
    grouped: dict[str, list[ContainerState]] = {}
    for line in result.stdout.splitlines():
        container = _state_from_ps_line(line)
        if container is not None:
            grouped.setdefault(container.instance_id, []).append(container)
    return grouped


def _state_from_ps_line(line: str) -> ContainerState | None:
    parts = line.split("\t")
    if len(parts) < 7:
        return None
    _, name, state, status, instance_id, service, ports_text = parts[:7]
    return ContainerState(
        name=name,
        service=service,
        state=state,
        health=_health_from_status(status),
        instance_id=instance_id,
        exit_code=_exit_code_from_status(status),
        restart_count=0,
        image_id=None,
        ports=_ports_from_text(ports_text),
    )


def _health_from_status(status: str) -> str | None:
    if "(healthy)" in status:
        return "healthy"
    if "(unhealthy)" in status:
        return "unhealthy"
    if "(health: starting)" in status:
        return "starting"
    return None


def _exit_code_from_status(status: str) -> int | None:
    if not status.startswith("Exited ("):
        return None
    code = status[len("Exited (") :].split(")", 1)[0]
    return int(code) if code.lstrip("-").isdigit() else None


def _ports_from_text(text: str) -> list[int]:
    """Host ports from `127.0.0.1:8001->8000/tcp, [::]:5433->5432/tcp`."""
    ports: set[int] = set()
    for part in text.split(","):
        host, arrow, _ = part.strip().partition("->")
        if not arrow:
            continue
        port = host.rsplit(":", 1)[-1]
        if "-" in port:  # a published range: 5010-5013
            low, _, high = port.partition("-")
            if low.isdigit() and high.isdigit():
                ports.update(range(int(low), int(high) + 1))
        elif port.isdigit():
            ports.add(int(port))
    return sorted(ports)


def published_ports(engine: Engine) -> set[int]:
    """Every host port the engine's containers publish, whoever owns them: on a remote
    engine these are the ports a new slot must not use."""
    result = proc.run(
        engine.argv("ps", "--format", "{{.Ports}}"), timeout=QUERY_TIMEOUT, what="docker ps"
    )
    return {port for line in result.stdout.splitlines() for port in _ports_from_text(line)}


def pause(engine: Engine, instance_id: str) -> list[str]:
    """Freeze the instance's running containers (cgroup freezer: no CPU, memory and state
    kept). Returns the names frozen now."""
    wanted = [c.name for c in ps(engine, instance_id) if c.state == "running"]
    still_running = wanted
    for attempt in range(1, PAUSE_ATTEMPTS + 1):
        if not still_running:
            break
        try:
            proc.run(engine.argv("pause", *still_running), timeout=60, what="docker pause")
            break
        except proc.CommandFailedError as e:
            # The cgroup freezer gives up while a process is busy in the kernel (seen under
            # load as "unable to freeze"); the containers it did freeze stay frozen.
            if "freeze" not in e.result.stderr or attempt == PAUSE_ATTEMPTS:
                raise
        time.sleep(PAUSE_RETRY_DELAY * attempt)
        still_running = [c.name for c in ps(engine, instance_id) if c.state == "running"]
    return wanted


def unpause(engine: Engine, containers: list[ContainerState]) -> list[str]:
    """Thaw those of an instance's `containers` (its ps) that are paused (compose cannot
    recreate a frozen one); their names."""
    paused = [c.name for c in containers if c.state == "paused"]
    if paused:
        proc.run(engine.argv("unpause", *paused), timeout=60, what="docker unpause")
    return paused

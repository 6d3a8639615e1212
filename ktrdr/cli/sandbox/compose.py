"""The one place the `docker compose` argv is built, plus docker CLI queries by label.

Uses the docker CLI through proc.run (not the docker SDK) so `ktrdr sandbox list` stays fast.

Ownership: the engine is shared by every KTRDR_HOME, checkout and test run on the machine.
Every query here that feeds a removal or a count filters on this home's `ktrdr.owner` label and
the instance's `ktrdr.instance` label together, so nothing of another home is ever counted,
stopped or removed; resources without an owner label (made before owner labels) are left alone.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ktrdr.cli.sandbox import machine_slots, proc
from ktrdr.cli.sandbox.errors import DockerUnavailableError, SandboxError
from ktrdr.envfile import SANDBOX_ENV_FILENAME

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.locate import Instance

COMPOSE_FILE = "docker-compose.sandbox.yml"
OFFLINE_ENV_FILE = "docker/images-offline.env"
INSTANCE_LABEL = "ktrdr.instance"
OWNER_LABEL = "ktrdr.owner"
OWNER_HOME_LABEL = "ktrdr.owner-home"
CHECKOUT_LABEL = "ktrdr.checkout"
WORKER_TYPE_LABEL = "ktrdr.worker-type"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"

QUERY_TIMEOUT = 30.0
# `list`/`status`: a hung engine says "unknown" within 5 s (with the start-up of the CLI and
# of `docker` itself) instead of hanging.
LIST_TIMEOUT = 4.0
UP_TIMEOUT = 900.0
BUILD_TIMEOUT = 3600.0

# One line per container, tab-separated: a label value may contain commas, so `{{.Labels}}` is
# not parseable; `{{.Label "x"}}` is.
_PS_FORMAT = "\t".join(
    (
        "{{.ID}}",
        "{{.Names}}",
        "{{.State}}",
        "{{.Status}}",
        '{{.Label "' + INSTANCE_LABEL + '"}}',
        '{{.Label "' + SERVICE_LABEL + '"}}',
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

    def as_dict(self) -> dict[str, Any]:
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


# --- engine --------------------------------------------------------------------------------


def engine_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def engine_reachable() -> bool:
    """True when the docker CLI exists and the daemon answers; fast and never raises."""
    if shutil.which("docker") is None:
        return False
    try:
        result = proc.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            timeout=5,
            check=False,
        )
    except SandboxError:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@functools.cache
def _engine_checked() -> bool:
    if shutil.which("docker") is None:
        raise DockerUnavailableError(
            "Docker is not installed: install Docker Engine (`make docker` on Debian/Ubuntu) "
            "and retry"
        )
    if not engine_reachable():
        raise DockerUnavailableError(
            f"Docker engine not reachable at {engine_host()}: start Docker and retry"
        )
    try:
        result = proc.run(["docker", "compose", "version", "--short"], timeout=15, check=False)
    except SandboxError as e:
        raise DockerUnavailableError(f"Docker Compose v2 check failed: {e}") from e
    if result.returncode != 0:
        raise DockerUnavailableError(
            "Docker Compose v2 is missing (`docker compose version` failed): install the "
            "compose plugin (`make docker`) and retry"
        )
    return True


def ensure_engine() -> None:
    """Raise DockerUnavailableError with one actionable line unless engine + Compose v2 work."""
    _engine_checked()


# --- compose argv --------------------------------------------------------------------------


def images_mode(env: Mapping[str, str]) -> str:
    """`offline` or `upstream`, as the instance's env file says: the shell's KTRDR_IMAGES only
    chooses the mode of a new instance (create/init), so one instance never flips between image
    sets depending on who runs `up`."""
    return (env.get("KTRDR_IMAGES") or "upstream").strip()


def images_mismatch(env: Mapping[str, str]) -> str | None:
    """A warning when the shell exports another KTRDR_IMAGES than the instance uses."""
    wanted = os.environ.get("KTRDR_IMAGES", "").strip()
    used = images_mode(env)
    if not wanted or wanted == used:
        return None
    return (
        f"KTRDR_IMAGES={wanted} is exported, but this instance uses {used} images (its "
        f".env.sandbox); to switch, run `KTRDR_IMAGES={wanted} ktrdr sandbox init` in the "
        "instance (data and slot are kept)"
    )


def project_of(env: Mapping[str, str]) -> str:
    """The compose project named by the instance's env file (instance id + home id)."""
    project = env.get("COMPOSE_PROJECT_NAME", "")
    if not project:
        raise SandboxError(
            f"{SANDBOX_ENV_FILENAME} has no COMPOSE_PROJECT_NAME: run `ktrdr sandbox doctor --fix`"
        )
    return project


def compose_argv(root: Path, env: Mapping[str, str]) -> list[str]:
    """`docker compose -p PROJECT --env-file .env.sandbox [--env-file offline] -f compose file`."""
    argv = [
        "docker",
        "compose",
        "-p",
        project_of(env),
        "--env-file",
        str(root / SANDBOX_ENV_FILENAME),
    ]
    if images_mode(env) == "offline":
        argv += ["--env-file", str(root / OFFLINE_ENV_FILE)]
    argv += ["-f", str(root / COMPOSE_FILE), "--project-directory", str(root)]
    return argv


def compose_env(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment for compose: the instance's own variables are dropped from it,
    because compose lets the shell override `--env-file` and an exported KTRDR_API_PORT would
    otherwise point this instance at another slot's ports."""
    return {k: v for k, v in os.environ.items() if k not in env}


def _compose(
    instance: Instance,
    args: list[str],
    *,
    timeout: float | None = QUERY_TIMEOUT,
    check: bool = True,
    capture: bool = True,
    what: str | None = None,
) -> proc.ProcResult:
    return proc.run(
        [*compose_argv(instance.root, instance.env), *args],
        cwd=instance.root,
        env=compose_env(instance.env),
        timeout=timeout,
        check=check,
        capture=capture,
        what=what or f"docker compose {args[0]} ({instance.instance_id})",
    )


def up(instance: Instance, *, build: bool = False) -> None:
    """`up -d` (+ `--build`): the one code path that starts an instance's containers."""
    ensure_engine()
    args = ["up", "-d", "--remove-orphans"]
    if build:
        args.append("--build")
    _compose(
        instance,
        args,
        timeout=BUILD_TIMEOUT if build else UP_TIMEOUT,
        what=f"starting instance {instance.instance_id}",
    )


class StartingStack:
    """`compose up -d` running in the background, so the gate can watch the containers while
    compose starts them, and stop compose when the gate has already seen a crash."""

    def __init__(self, instance: Instance, *, build: bool = False) -> None:
        args = ["up", "-d", "--remove-orphans", *(["--build"] if build else [])]
        self.instance_id = instance.instance_id
        self._process = proc.spawn(
            [*compose_argv(instance.root, instance.env), *args],
            cwd=instance.root,
            env=compose_env(instance.env),
        )
        self._stderr = ""
        self._thread = threading.Thread(target=self._wait, name="compose-up", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        _, self._stderr = self._process.communicate()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def error(self) -> str | None:
        """None while running or after success; else one line with the tail of stderr."""
        if not self.done() or self._process.returncode == 0:
            return None
        return (
            f"starting instance {self.instance_id} failed (exit {self._process.returncode}): "
            f"{proc.stderr_tail(self._stderr)}"
        )

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def cancel(self) -> None:
        """Stop compose (SIGTERM, then SIGKILL); the containers it started stay as they are."""
        if self.done():
            return
        self._process.terminate()
        self._thread.join(10)
        if not self.done():
            self._process.kill()
            self._thread.join(10)


def start(instance: Instance, *, build: bool = False) -> StartingStack:
    """Begin `up -d` in the background (see StartingStack); `up` is the blocking form."""
    ensure_engine()
    return StartingStack(instance, build=build)


def stop(instance: Instance) -> None:
    ensure_engine()
    _compose(instance, ["stop"], timeout=180, what=f"stopping instance {instance.instance_id}")


def down(instance_id: str, instance: Instance | None, *, volumes: bool) -> None:
    """`down [-v] --remove-orphans`; without an instance, or when its directory, env file or
    compose file is gone, removes the containers (and volumes, networks) carrying the instance
    label directly."""
    ensure_engine()
    unpause(instance_id)  # a frozen container cannot take the stop signal
    if (
        instance is not None
        and instance.env
        and (instance.root / COMPOSE_FILE).is_file()
        and instance.env_path.is_file()
    ):
        args = ["down", "--remove-orphans", "--timeout", "10"]
        if volumes:
            args.append("-v")
        try:
            _compose(instance, args, timeout=300, what=f"removing instance {instance_id}")
        except SandboxError:
            if not _remove_by_label(instance_id, volumes=volumes):
                raise
            return
    _remove_by_label(instance_id, volumes=volumes)


def owned_filters(instance_id: str | None = None) -> list[str]:
    """Docker `--filter`s matching this home's resources (of one instance when given); docker
    ANDs label filters, so both must match."""
    from ktrdr.cli.sandbox.home import home_id

    filters = ["--filter", f"label={OWNER_LABEL}={home_id()}"]
    if instance_id is not None:
        filters += ["--filter", f"label={INSTANCE_LABEL}={instance_id}"]
    return filters


def _ids(list_argv: list[str], instance_id: str) -> list[str]:
    result = proc.run(
        [*list_argv, *owned_filters(instance_id)], timeout=QUERY_TIMEOUT, what=list_argv[1] + " ls"
    )
    return list(dict.fromkeys(line for line in result.stdout.split() if line))


def _remove_by_label(instance_id: str, *, volumes: bool) -> bool:
    """Remove labelled containers, networks (and volumes); True when nothing is left."""
    containers = _ids(["docker", "ps", "-a", "-q"], instance_id)
    if containers:
        proc.run(["docker", "rm", "-f", "-v", *containers], timeout=120, what="docker rm")
    networks = _ids(["docker", "network", "ls", "-q"], instance_id)
    if networks:
        proc.run(["docker", "network", "rm", *networks], timeout=60, what="docker network rm")
    if volumes:
        vols = _ids(["docker", "volume", "ls", "-q"], instance_id)
        if vols:
            proc.run(["docker", "volume", "rm", "-f", *vols], timeout=60, what="docker volume rm")
    left = leftovers(instance_id)
    return not left or (not volumes and all(item.startswith("volume ") for item in left))


def leftovers(instance_id: str) -> list[str]:
    """Containers, volumes and networks still labelled for the instance; [] when clean."""
    ensure_engine()
    left: list[str] = []
    queries = (
        ("container", ["docker", "ps", "-a", "--format", "{{.Names}}"]),
        ("volume", ["docker", "volume", "ls", "--format", "{{.Name}}"]),
        ("network", ["docker", "network", "ls", "--format", "{{.Name}}"]),
    )
    for kind, argv in queries:
        for name in _ids(argv, instance_id):
            left.append(f"{kind} {name}")
    return left


# --- state queries -------------------------------------------------------------------------


def ps(instance_id: str, root: Path | None = None) -> list[ContainerState]:
    """Every container of the instance owned by this home, in any state (one-off `run`
    containers excluded), with health, exit code, restart count and image id from `docker
    inspect`. `root` is unused: the query goes by label so it works when the compose file is
    gone."""
    del root
    ensure_engine()
    listed = proc.run(
        [
            "docker",
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            *owned_filters(instance_id),
        ],
        timeout=QUERY_TIMEOUT,
        what="docker ps",
    )
    ids = listed.stdout.split()
    if not ids:
        return []
    return _inspect_containers(ids)


def _inspect_containers(ids: list[str]) -> list[ContainerState]:
    inspected = proc.run(
        ["docker", "inspect", "--type", "container", *ids],
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


def containers_by_instance() -> dict[str, list[ContainerState]]:
    """This home's containers grouped by instance id: ONE `docker ps` call (for `list`).
    Exit codes come from the status text; restart counts and image ids are not known here.
    No engine pre-check: `list` must stay fast, and a failing `docker ps` says the same. A
    missing CLI or an engine that does not answer within LIST_TIMEOUT raises
    DockerUnavailableError: the state is unknown, never "no containers"."""
    argv = ["docker", "ps", "-a", *owned_filters(), "--format", _PS_FORMAT]
    try:
        result = proc.run(argv, timeout=LIST_TIMEOUT, what="docker ps")
    except proc.CommandFailedError as e:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {engine_host()}: start Docker and retry "
            f"({proc.stderr_tail(e.result.stderr, 1)})"
        ) from e
    except SandboxError as e:  # no docker CLI, or the engine did not answer in time
        what = (
            f"it did not answer within {LIST_TIMEOUT:g}s" if "did not finish" in str(e) else str(e)
        )
        raise DockerUnavailableError(
            f"Docker engine at {engine_host()} cannot be asked: {what}"
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


def logs(instance: Instance, *, service: str | None, follow: bool, tail: int) -> int:
    """`docker compose logs` inheriting the terminal; returns its exit code."""
    ensure_engine()
    args = ["logs", "--tail", str(tail)]
    if follow:
        args.append("--follow")
    if service:
        args.append(service)
    result = _compose(instance, args, timeout=None, check=False, capture=False)
    return result.returncode


def log_text(instance: Instance, *, service: str | None, tail: int) -> str:
    """The last `tail` lines per service as text (for callers that own stdout, e.g. MCP)."""
    ensure_engine()
    args = ["logs", "--no-color", "--tail", str(tail), *([service] if service else [])]
    return _compose(instance, args, timeout=QUERY_TIMEOUT).stdout


def container_logs(container: str, *, tail: int, timeout: float = QUERY_TIMEOUT) -> list[str]:
    """The last `tail` lines of one container, stdout and stderr merged in time order (a
    traceback on stderr belongs between the request lines around it); [] when unavailable."""
    result = proc.run(
        ["docker", "logs", "--timestamps", "--tail", str(tail), container],
        timeout=timeout,
        check=False,
    )
    return merge_timestamped(result.stdout, result.stderr)[-tail:]


def engine_view(container: str) -> list[str]:
    """What the engine knows of a container that logged nothing: state, exit code, OOM kill,
    its error, and the last health-check results (from `docker inspect`)."""
    result = proc.run(
        ["docker", "inspect", "--type", "container", container],
        timeout=QUERY_TIMEOUT,
        check=False,
        what="docker inspect",
    )
    try:
        item = (json.loads(result.stdout or "[]") or [{}])[0]
    except (json.JSONDecodeError, IndexError) as e:
        raise SandboxError(f"docker inspect returned unreadable output: {e}") from e
    return describe_state(item.get("State") or {}, result.stderr)


def describe_state(state: Mapping[str, Any], stderr: str = "") -> list[str]:
    if not state:
        return [f"no such container ({proc.stderr_tail(stderr, 1) or 'it is gone'})"]
    lines = [
        f"state {state.get('Status')}, exit code {state.get('ExitCode')}, "
        f"OOM-killed {'yes' if state.get('OOMKilled') else 'no'}"
        + (f", finished at {state['FinishedAt']}" if state.get("Status") == "exited" else "")
    ]
    if state.get("Error"):
        lines.append(f"engine error: {state['Error']}")
    health = state.get("Health") or {}
    for check in (health.get("Log") or [])[-3:]:
        output = " ".join(str(check.get("Output") or "").split())[:200]
        lines.append(f"health check exit {check.get('ExitCode')}: {output or '(no output)'}")
    return lines


def merge_timestamped(*streams: str) -> list[str]:
    """Lines of `docker logs --timestamps` streams in time order, timestamps removed. Docker
    pads the nanoseconds, so the RFC 3339 stamps sort as text; the sort is stable."""
    stamped = [line for stream in streams for line in stream.splitlines()]
    stamped.sort(key=lambda line: line.split(" ", 1)[0])
    return [line.split(" ", 1)[1] if " " in line else "" for line in stamped]


# --- compose file facts ---------------------------------------------------------------------


def _compose_services(root: Path) -> dict[str, dict[str, Any]]:
    import yaml

    path = root / COMPOSE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:  # the same words as `up`: an old branch, not a broken file
        raise SandboxError(
            f"{path} is missing: this checkout has no stack definition; update the branch from main"
        ) from e
    except OSError as e:
        raise SandboxError(f"cannot read {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise SandboxError(f"{path} is not valid YAML: {e}") from e
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise SandboxError(f"{path} has no `services` section")
    return {str(k): v if isinstance(v, dict) else {} for k, v in services.items()}


def _labels(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("labels") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {k: v for k, _, v in pairs}
    return {str(k): str(v) for k, v in raw.items()}


def worker_services(root: Path) -> dict[str, str]:
    """Default-profile services carrying a ktrdr.worker-type label: service -> worker type."""
    workers: dict[str, str] = {}
    for name, service in _compose_services(root).items():
        worker_type = _labels(service).get(WORKER_TYPE_LABEL)
        if worker_type and not service.get("profiles"):
            workers[name] = worker_type
    return workers


def expected_workers(root: Path) -> dict[str, int]:
    """Worker count per type, derived from the compose file (replicas counted)."""
    services = _compose_services(root)
    counts: dict[str, int] = {}
    for name, worker_type in worker_services(root).items():
        replicas = (services[name].get("deploy") or {}).get("replicas", 1)
        counts[worker_type] = counts.get(worker_type, 0) + int(replicas)
    return counts


def one_shot_services(root: Path) -> set[str]:
    """Services others wait on with `service_completed_successfully` (migrations): exiting 0
    is their success, not a crash."""
    one_shot: set[str] = set()
    for service in _compose_services(root).values():
        depends = service.get("depends_on") or {}
        if isinstance(depends, dict):
            for dep, spec in depends.items():
                if isinstance(spec, dict) and spec.get("condition") == (
                    "service_completed_successfully"
                ):
                    one_shot.add(str(dep))
    return one_shot


def default_services(root: Path) -> list[str]:
    """Services started by a plain `up` (no profile)."""
    return sorted(n for n, s in _compose_services(root).items() if not s.get("profiles"))


def services(root: Path) -> list[str]:
    """Every service of the compose file, profiles included."""
    return sorted(_compose_services(root))


# --- ownership ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """A container, volume or network with its owner labels ("" when absent)."""

    kind: str
    name: str
    instance_id: str
    owner: str
    owner_home: str
    checkout: str
    project: str
    test: str = "0"
    working_dir: str = ""
    resource_id: str = ""

    def owner_description(self) -> str:
        if not self.owner:
            return "no owner label (made before owner labels, or by hand)"
        where = f"KTRDR_HOME {self.owner_home}" if self.owner_home else f"home {self.owner}"
        return where + (f", checkout {self.checkout}" if self.checkout else "")


def _fmt_label(key: str) -> str:
    return '{{.Label "' + key + '"}}'


_RESOURCE_LABELS = (
    INSTANCE_LABEL,
    OWNER_LABEL,
    OWNER_HOME_LABEL,
    CHECKOUT_LABEL,
    PROJECT_LABEL,
    "ktrdr.test",
)


def resources(filters: list[str], *, timeout: float = QUERY_TIMEOUT) -> list[Resource]:
    """Containers, volumes and networks matching docker `--filter`s, with their labels (three
    queries). Raises SandboxError when the engine cannot be asked."""
    labels = "\t".join(_fmt_label(key) for key in _RESOURCE_LABELS)
    queries = (
        ("container", ["docker", "ps", "-a"], "{{.Names}}\t{{.ID}}\t", _fmt_label(WORKING_DIR)),
        ("volume", ["docker", "volume", "ls"], "{{.Name}}\t{{.Name}}\t", ""),
        ("network", ["docker", "network", "ls"], "{{.Name}}\t{{.ID}}\t", ""),
    )
    found: list[Resource] = []
    for kind, argv, head, tail in queries:
        listed = proc.run(
            [*argv, *filters, "--format", head + labels + ("\t" + tail if tail else "")],
            timeout=timeout,
            what=f"docker {kind} ls",
        )
        for line in listed.stdout.splitlines():
            parts = [*line.split("\t"), *[""] * 10]
            name, resource_id, instance_id, owner, home, checkout, project, test = parts[:8]
            found.append(
                Resource(
                    kind,
                    name,
                    instance_id,
                    owner,
                    home,
                    checkout,
                    project,
                    test or "0",
                    working_dir=parts[8] if tail else "",
                    resource_id=resource_id,
                )
            )
    return found


WORKING_DIR = "com.docker.compose.project.working_dir"


def foreign_in_project(project: str, *, checkout: Path) -> list[Resource]:
    """Resources of compose project `project` that this instance does not own: another home's
    (owner label differs), another checkout's, or unlabelled ones. Compose would adopt and
    recreate them, so `up`, `down` and `destroy` refuse to touch such a project."""
    from ktrdr.cli.sandbox.home import home_id

    mine = home_id()
    here = str(checkout.resolve())
    foreign: list[Resource] = []
    for item in resources(["--filter", f"label={PROJECT_LABEL}={project}"]):
        if item.owner != mine:
            foreign.append(item)
        elif item.checkout and str(Path(item.checkout).resolve()) != here:
            foreign.append(item)
    return foreign


def refuse_foreign(instance_id: str, project: str, *, checkout: Path, action: str) -> None:
    """One line naming the owner when compose project `project` holds anything not ours."""
    foreign = foreign_in_project(project, checkout=checkout)
    if not foreign:
        return
    first = foreign[0]
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    raise SandboxError(
        f"cannot {action} {instance_id}: compose project {project} on this engine holds "
        f"{first.kind} {first.name}{more} owned by {first.owner_description()}, not by this "
        "instance; nothing was changed: use that owner's KTRDR_HOME, or remove its resources "
        "there first"
    )


def duplicate_networks(instance_id: str) -> dict[str, list[str]]:
    """Network name -> ids, for names this instance's networks hold more than once (two
    concurrent `compose up`s can each create `<project>_default`)."""
    by_name: dict[str, list[str]] = {}
    for item in resources(owned_filters(instance_id)):
        if item.kind == "network":
            by_name.setdefault(item.name, []).append(item.resource_id)
    return {name: ids for name, ids in by_name.items() if len(ids) > 1}


def repair_duplicate_networks(instance_id: str) -> list[str]:
    """Remove the instance's containers (volumes kept, so no data is lost) and every copy of a
    duplicated network, so the next `compose up` makes exactly one. Returns what was done."""
    duplicates = duplicate_networks(instance_id)
    if not duplicates:
        return []
    containers = _ids(["docker", "ps", "-a", "-q"], instance_id)
    if containers:
        proc.run(["docker", "rm", "-f", *containers], timeout=120, what="docker rm")
    ids = [network_id for group in duplicates.values() for network_id in group]
    proc.run(["docker", "network", "rm", *ids], timeout=60, what="docker network rm")
    return [f"network {name} existed {len(group)} times" for name, group in duplicates.items()]


def pause(instance_id: str) -> list[str]:
    """Freeze the instance's running containers (cgroup freezer: no CPU, memory and state
    kept). Returns the names frozen now."""
    running = [c.name for c in ps(instance_id) if c.state == "running"]
    if running:
        proc.run(["docker", "pause", *running], timeout=60, what="docker pause")
    return running


def unpause(instance_id: str) -> list[str]:
    """Thaw the instance's paused containers (compose cannot recreate a frozen one)."""
    paused = [c.name for c in ps(instance_id) if c.state == "paused"]
    if paused:
        proc.run(["docker", "unpause", *paused], timeout=60, what="docker unpause")
    return paused


def engine_socket_exists() -> bool:
    """Whether an engine may be listening here even though the CLI cannot ask it: a local
    socket file, or a remote DOCKER_HOST (which may well hold containers)."""
    host = engine_host()
    if host.startswith("unix://"):
        return os.path.exists(host[len("unix://") :])
    return True


def slots_of_other_homes() -> dict[int, str]:
    """Slot -> who holds it, for slots whose volumes on this engine belong to another home that
    still exists (a stopped or never started stack holds no port, but it will want its slot's
    ports on `up`; machine_slots explains the claim marker). Empty
    when the engine cannot be asked quickly: the port probe still guards running stacks."""
    from ktrdr.cli.sandbox.home import home_id

    fields = (INSTANCE_LABEL, OWNER_LABEL, OWNER_HOME_LABEL, "ktrdr.slot")
    argv = ["docker", "volume", "ls", "--filter", f"label={OWNER_LABEL}", "--format"]
    argv.append("\t".join(_fmt_label(key) for key in fields))
    try:
        listed = proc.run(argv, timeout=LIST_TIMEOUT, check=False, what="docker volume ls")
    except SandboxError:
        return {}
    mine = home_id()
    held: dict[int, str] = {}
    for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
        instance_id, owner, owner_home, slot = [*line.split("\t"), "", "", ""][:4]
        if owner and owner != mine and slot.isdigit() and _home_exists(owner, owner_home):
            held.setdefault(
                int(slot), f"instance {instance_id} of KTRDR_HOME {owner_home or owner}"
            )
    return held


def mark_slot(instance_id: str, slot: int, *, replace: bool = False) -> bool:
    """Make the instance's slot-claim marker (see machine_slots); `replace` first removes one
    an earlier claim left (init may move an instance to another slot). False when the engine
    could not be asked: the claim then lives only in this home's registry."""
    from ktrdr.cli.sandbox.home import home_id, ktrdr_home
    from ktrdr.cli.sandbox.instance import project_name

    owner = home_id()
    labels = {
        OWNER_LABEL: owner,
        OWNER_HOME_LABEL: str(ktrdr_home()),
        INSTANCE_LABEL: instance_id,
        "ktrdr.slot": str(slot),
        "ktrdr.test": os.environ.get("KTRDR_TEST", "0"),
    }
    name = machine_slots.marker_name(project_name(instance_id, owner))
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    try:
        if replace:  # a marker of an earlier slot must not keep that slot busy
            proc.run(["docker", "volume", "rm", "-f", name], timeout=LIST_TIMEOUT, check=False)
        made = proc.run(
            ["docker", "volume", "create", *label_args, name], timeout=LIST_TIMEOUT, check=False
        )
    except SandboxError:  # no docker CLI, or the engine hangs
        return False
    return made.returncode == 0


def unmark_slot(instance_id: str) -> None:
    """Remove the slot-claim marker of a create that is undone (best effort: doctor reports
    a marker left behind as an orphan)."""
    from ktrdr.cli.sandbox.home import home_id
    from ktrdr.cli.sandbox.instance import project_name

    name = machine_slots.marker_name(project_name(instance_id, home_id()))
    try:
        proc.run(["docker", "volume", "rm", "-f", name], timeout=LIST_TIMEOUT, check=False)
    except SandboxError:
        pass


def _home_exists(owner: str, owner_home: str) -> bool:
    """Whether the home that labelled a resource is still there. Leftovers of a deleted home
    (a killed test run's temp KTRDR_HOME) hold no port and nobody can start them again, so
    they must not block a slot forever; doctor lists them."""
    if not owner_home:
        return True
    try:
        return (Path(owner_home) / "home-id").read_text().strip() == owner
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # another user's home we may not read: assume it is alive
        return True


def own_volumes(instance_id: str) -> list[str] | None:
    """This home's volumes labelled for `instance_id` (one quick query); None when the engine
    cannot be asked."""
    argv = ["docker", "volume", "ls", *owned_filters(instance_id), "--format", "{{.Name}}"]
    try:
        listed = proc.run(argv, timeout=LIST_TIMEOUT, check=False, what="docker volume ls")
    except SandboxError:
        return None
    return listed.stdout.split() if listed.returncode == 0 else None

"""The one place the `docker compose` argv is built, plus docker CLI queries by label.

Uses the docker CLI through proc.run (not the docker SDK) so `ktrdr sandbox list` stays fast.
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
from typing import Any

from ktrdr.cli.sandbox import proc
from ktrdr.cli.sandbox.errors import DockerUnavailableError, SandboxError
from ktrdr.envfile import SANDBOX_ENV_FILENAME, read_env_file

COMPOSE_FILE = "docker-compose.sandbox.yml"
OFFLINE_ENV_FILE = "docker/images-offline.env"
INSTANCE_LABEL = "ktrdr.instance"
WORKER_TYPE_LABEL = "ktrdr.worker-type"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"

QUERY_TIMEOUT = 30.0
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
    """`offline` or `upstream`: the KTRDR_IMAGES env var wins over the env file's line."""
    return (os.environ.get("KTRDR_IMAGES") or env.get("KTRDR_IMAGES") or "upstream").strip()


def compose_argv(instance_id: str, root: Path, env: Mapping[str, str]) -> list[str]:
    """`docker compose -p ID --env-file .env.sandbox [--env-file offline] -f compose file`."""
    argv = ["docker", "compose", "-p", instance_id, "--env-file", str(root / SANDBOX_ENV_FILENAME)]
    if images_mode(env) == "offline":
        argv += ["--env-file", str(root / OFFLINE_ENV_FILE)]
    argv += ["-f", str(root / COMPOSE_FILE), "--project-directory", str(root)]
    return argv


def compose_env(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment for compose: the instance's own variables are dropped from it,
    because compose lets the shell override `--env-file` and an exported KTRDR_API_PORT would
    otherwise point this instance at another slot's ports."""
    return {k: v for k, v in os.environ.items() if k not in env or k == "KTRDR_IMAGES"}


def _instance_env(root: Path) -> dict[str, str]:
    env_path = root / SANDBOX_ENV_FILENAME
    if not env_path.is_file():
        raise SandboxError(
            f"no {SANDBOX_ENV_FILENAME} in {root}: run `ktrdr sandbox create NAME` or "
            "`ktrdr sandbox init` first"
        )
    return read_env_file(env_path)


def _compose(
    instance_id: str,
    root: Path,
    args: list[str],
    *,
    timeout: float | None = QUERY_TIMEOUT,
    check: bool = True,
    capture: bool = True,
    what: str | None = None,
) -> proc.ProcResult:
    env = _instance_env(root)
    return proc.run(
        [*compose_argv(instance_id, root, env), *args],
        cwd=root,
        env=compose_env(env),
        timeout=timeout,
        check=check,
        capture=capture,
        what=what or f"docker compose {args[0]} ({instance_id})",
    )


def up(instance_id: str, root: Path, *, build: bool = False) -> None:
    """`up -d` (+ `--build`): the one code path that starts an instance's containers."""
    ensure_engine()
    args = ["up", "-d", "--remove-orphans"]
    if build:
        args.append("--build")
    _compose(
        instance_id,
        root,
        args,
        timeout=BUILD_TIMEOUT if build else UP_TIMEOUT,
        what=f"starting instance {instance_id}",
    )


class StartingStack:
    """`compose up -d` running in the background, so the gate can watch the containers while
    compose starts them, and stop compose when the gate has already seen a crash."""

    def __init__(self, instance_id: str, root: Path, *, build: bool = False) -> None:
        env = _instance_env(root)
        args = ["up", "-d", "--remove-orphans", *(["--build"] if build else [])]
        self.instance_id = instance_id
        self._process = proc.spawn(
            [*compose_argv(instance_id, root, env), *args], cwd=root, env=compose_env(env)
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


def start(instance_id: str, root: Path, *, build: bool = False) -> StartingStack:
    """Begin `up -d` in the background (see StartingStack); `up` is the blocking form."""
    ensure_engine()
    return StartingStack(instance_id, root, build=build)


def stop(instance_id: str, root: Path) -> None:
    ensure_engine()
    _compose(instance_id, root, ["stop"], timeout=180, what=f"stopping instance {instance_id}")


def down(instance_id: str, root: Path | None, *, volumes: bool) -> None:
    """`down [-v] --remove-orphans`; when the instance dir or compose file is gone, removes the
    containers (and volumes, networks) carrying the instance label directly."""
    ensure_engine()
    if (
        root is not None
        and (root / COMPOSE_FILE).is_file()
        and (root / SANDBOX_ENV_FILENAME).is_file()
    ):
        args = ["down", "--remove-orphans", "--timeout", "10"]
        if volumes:
            args.append("-v")
        try:
            _compose(instance_id, root, args, timeout=300, what=f"removing instance {instance_id}")
        except SandboxError:
            if not _remove_by_label(instance_id, volumes=volumes):
                raise
            return
    _remove_by_label(instance_id, volumes=volumes)


def _label_filters(instance_id: str) -> list[list[str]]:
    return [
        ["--filter", f"label={INSTANCE_LABEL}={instance_id}"],
        ["--filter", f"label={PROJECT_LABEL}={instance_id}"],
    ]


def _ids(list_argv: list[str], instance_id: str) -> list[str]:
    found: list[str] = []
    for filters in _label_filters(instance_id):
        result = proc.run([*list_argv, *filters], timeout=QUERY_TIMEOUT, what=list_argv[1] + " ls")
        for line in result.stdout.split():
            if line and line not in found:
                found.append(line)
    return found


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
    """Every container of the instance (one-off `run` containers excluded), with health, exit
    code, restart count and image id from `docker inspect`. `root` is unused: the query goes by
    label so it works when the compose file is gone."""
    del root
    ensure_engine()
    listed = proc.run(
        [
            "docker",
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            f"label={PROJECT_LABEL}={instance_id}",
        ],
        timeout=QUERY_TIMEOUT,
        what="docker ps",
    )
    ids = listed.stdout.split()
    if not ids:
        return []
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
    """Every ktrdr-labelled container grouped by instance id: ONE `docker ps` call (for `list`).
    Exit codes come from the status text; restart counts and image ids are not known here.
    No engine pre-check: `list` must stay fast, and a failing `docker ps` says the same."""
    argv = ["docker", "ps", "-a", "--filter", f"label={INSTANCE_LABEL}", "--format", _PS_FORMAT]
    try:
        result = proc.run(argv, timeout=QUERY_TIMEOUT, what="docker ps")
    except proc.CommandFailedError as e:
        raise DockerUnavailableError(
            f"Docker engine not reachable at {engine_host()}: start Docker and retry "
            f"({proc.stderr_tail(e.result.stderr, 1)})"
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


def logs(instance_id: str, root: Path, *, service: str | None, follow: bool, tail: int) -> int:
    """`docker compose logs` inheriting the terminal; returns its exit code."""
    ensure_engine()
    args = ["logs", "--tail", str(tail)]
    if follow:
        args.append("--follow")
    if service:
        args.append(service)
    result = _compose(instance_id, root, args, timeout=None, check=False, capture=False)
    return result.returncode


def container_logs(container: str, *, tail: int) -> list[str]:
    """The last `tail` lines of one container, stdout and stderr merged in time order (a
    traceback on stderr belongs between the request lines around it); [] when unavailable."""
    result = proc.run(
        ["docker", "logs", "--timestamps", "--tail", str(tail), container],
        timeout=QUERY_TIMEOUT,
        check=False,
    )
    return merge_timestamped(result.stdout, result.stderr)[-tail:]


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

"""Docker harness for tests marked `docker` (registered in tests/conftest.py via pytest_plugins).

- `docker_engine` (session): skips the marked tests when no engine + Compose v2 answers, but
  fails them when CI is set. Applied automatically to every test with the `docker` marker.
- `compose_project` (factory): a unique project name (prefix `ktrdr-test-`), the labels to put
  on every service/volume/network, and a finalizer that removes what carries the project's labels
  even when the test fails.
- `offline_postgres` (session): the offline PostgreSQL image on a free 127.0.0.1 port with a
  random password; yields a superuser DSN.
- At session end, this session's leftovers are swept: its harness projects, and every resource
  owned (label ktrdr.owner) by a KTRDR_HOME the session made under its temp dir. Nothing of
  another session, another home or a user's sandbox is touched.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.proc import ProcResult, run

TEST_LABEL = "ktrdr.test=1"
# Not ktrdr.instance: harness projects are no sandbox instances, so `sandbox doctor --fix`
# (run by concurrent tests) must not take them for orphans.
PROJECT_LABEL = "ktrdr.test-project"
PROJECT_PREFIX = "ktrdr-test-"
OFFLINE_POSTGRES_IMAGE = "ktrdr-offline/postgres:15"


@dataclass
class _SessionState:
    engine_used: bool = False
    projects: set[str] = field(default_factory=set)


_state = _SessionState()


# --- the engine -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DockerEngine:
    server_version: str
    compose_version: str


def docker(*args: object, timeout: float = 120, check: bool = True) -> ProcResult:
    """`docker …` through the project's one subprocess helper."""
    return run(["docker", *args], timeout=timeout, check=check, what=f"docker {args[0]}")


def probe_engine() -> DockerEngine | str:
    """The engine's versions, or why it cannot be used."""
    try:
        server = docker("version", "--format", "{{.Server.Version}}", timeout=20, check=False)
        compose = docker("compose", "version", "--short", timeout=20, check=False)
    except Exception as e:  # any failure here means "no engine"
        return f"docker is not usable: {e}"
    if server.returncode != 0 or not server.stdout.strip():
        return "no Docker engine answers (run `make docker`)"
    if compose.returncode != 0:
        return "Docker Compose v2 is missing (run `make docker`)"
    return DockerEngine(server.stdout.strip(), compose.stdout.strip())


def missing_engine_outcome(environ: dict[str, str] | os._Environ[str]) -> str:
    """'fail' in CI (docker tests are required there), else 'skip'."""
    return "fail" if environ.get("CI") else "skip"


def skip_or_fail(reason: str) -> None:
    if missing_engine_outcome(os.environ) == "fail":
        pytest.fail(f"{reason}; docker tests are required when CI is set", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> DockerEngine:
    engine = probe_engine()
    if isinstance(engine, str):
        skip_or_fail(engine)
    assert isinstance(engine, DockerEngine)
    _state.engine_used = True
    return engine


@pytest.fixture(autouse=True)
def _docker_marker_needs_engine(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_engine")


# --- cleanup by label -------------------------------------------------------------------------
def _ids(kind: str, *labels: str) -> list[str]:
    """Ids of one kind carrying every one of labels."""
    listing = {
        "container": ["ps", "-aq"],
        "volume": ["volume", "ls", "-q"],
        "network": ["network", "ls", "-q"],
    }[kind]
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    return sorted(set(docker(*listing, *filters, check=False).stdout.split()))


def remove_labelled(label: str) -> None:
    """Remove containers (with their anonymous volumes), then volumes and networks with label."""
    containers = _ids("container", label)
    if containers:
        docker("rm", "-f", "-v", *containers, check=False, timeout=180)
    volumes = _ids("volume", label)
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    for network in _ids("network", label):
        docker("network", "rm", network, check=False)


def leftovers(*labels: str) -> dict[str, list[str]]:
    """What still carries all labels, per kind (empty lists when clean)."""
    return {kind: _ids(kind, *labels) for kind in ("container", "volume", "network")}


def remove_project(name: str) -> None:
    """Remove what belongs to project (or sandbox instance) name, by its labels."""
    for label in ("com.docker.compose.project", PROJECT_LABEL, "ktrdr.instance"):
        remove_labelled(f"{label}={name}")


# --- compose projects -------------------------------------------------------------------------
@dataclass
class ComposeProject:
    """One uniquely named compose project for one test."""

    name: str
    labels: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KTRDR_TEST": "1", "COMPOSE_PROJECT_NAME": self.name}

    def compose(
        self,
        *args: object,
        files: Sequence[Path] = (),
        env_files: Sequence[Path] = (),
        env: dict[str, str] | None = None,
        timeout: float = 300,
        check: bool = True,
    ) -> ProcResult:
        argv: list[object] = ["docker", "compose", "-p", self.name]
        for env_file in env_files:
            argv += ["--env-file", env_file]
        for file in files:
            argv += ["-f", file]
        return run(
            [*argv, *args],
            env={**self.env, **(env or {})},
            timeout=timeout,
            check=check,
            what=f"docker compose {args[0] if args else ''} ({self.name})",
        )

    def remove(self) -> None:
        remove_project(self.name)


@pytest.fixture
def compose_project(docker_engine: DockerEngine) -> Iterator[Callable[[str], ComposeProject]]:
    """Factory: compose_project("pg") -> a project named ktrdr-test-pg-<random>."""
    made: list[ComposeProject] = []

    def make(hint: str = "") -> ComposeProject:
        stem = f"{hint}-" if hint else ""
        name = f"{PROJECT_PREFIX}{stem}{uuid.uuid4().hex[:8]}"
        labels = {"ktrdr.test": "1", PROJECT_LABEL: name}
        project = ComposeProject(name, labels)
        made.append(project)
        _state.projects.add(name)
        return project

    yield make
    for project in made:
        project.remove()
        _state.projects.discard(project.name)


# --- offline PostgreSQL -----------------------------------------------------------------------
def image_exists(image: str) -> bool:
    return docker("image", "inspect", image, check=False, timeout=30).returncode == 0


def wait_for_postgres(dsn: str, *, timeout: float = 90) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL at {dsn} not ready in {timeout}s: {e}") from e
            time.sleep(0.3)


def published_port(container: str, container_port: str) -> int:
    out = docker("port", container, container_port).stdout.strip().splitlines()[0]
    return int(out.rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def offline_postgres(docker_engine: DockerEngine) -> Iterator[str]:
    """A superuser DSN for a throwaway offline PostgreSQL container (fsync off: tests only)."""
    if not image_exists(OFFLINE_POSTGRES_IMAGE):
        skip_or_fail(f"image {OFFLINE_POSTGRES_IMAGE} is missing (run `make images-offline`)")
    name = f"{PROJECT_PREFIX}pg-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    _state.projects.add(name)
    try:
        docker(
            "run", "-d", "--name", name,
            "--label", TEST_LABEL, "--label", f"{PROJECT_LABEL}={name}",
            "-e", f"POSTGRES_PASSWORD={password}", "-e", "POSTGRES_USER=postgres",
            "-p", "127.0.0.1::5432",
            OFFLINE_POSTGRES_IMAGE, "-c", "fsync=off", "-c", "max_connections=200",
        )  # fmt: skip
        dsn = f"postgresql://postgres:{password}@127.0.0.1:{published_port(name, '5432')}/postgres"
        wait_for_postgres(dsn)
        yield dsn
    finally:
        remove_project(name)
        _state.projects.discard(name)


# --- the end-of-session sweep ----------------------------------------------------------------
def session_home_ids(session: pytest.Session) -> list[str]:
    """The home ids of every KTRDR_HOME this session's tests made (all live under its temp
    dir): their resources are this session's own, whichever test forgot them."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return []
    base = factory.getbasetemp()
    found = set()
    for path in base.rglob("home-id"):
        text = path.read_text(errors="replace").strip()
        if len(text) == 8 and all(c in "0123456789abcdef" for c in text):
            found.add(text)
    return sorted(found)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _state.engine_used:
        for name in sorted(_state.projects):
            remove_project(name)
        for owner in session_home_ids(session):
            remove_labelled(f"ktrdr.owner={owner}")


def inspect_json(kind: str, ref: str) -> dict[str, object]:
    """`docker <kind> inspect` of one object, parsed."""
    data = json.loads(docker(kind, "inspect", ref).stdout)
    return dict(data[0])

"""Bystanders: another home's sandboxes on the engine while the suite runs (`make test` sets
KTRDR_BYSTANDERS=1 for the integration tests; unit tests cannot reach an engine).

Registered in tests/conftest.py via pytest_plugins. With KTRDR_BYSTANDERS=1 (`make test` sets it)
and a Docker engine that answers, the session-scoped autouse fixture `bystanders` sets up, before
the first test runs, a KTRDR_HOME of its own (a temp dir) holding a git copy of this project, and
runs the real CLI there with KTRDR_IMAGES=offline: `init-shared`, `create by-up`, `up`,
`create by-down`, `up`, `down` for by-down. While each is up it writes a marker row into its
database; then it records a snapshot (by-up's containers with StartedAt and RestartCount, its
networks, both instances' volumes with CreatedAt).

tests/integration/test_zz_bystanders.py (collected last) compares the snapshot with the engine:
nothing the suite did may have touched another home's sandboxes. At session end both are
destroyed (`destroy --all --yes --force` with that home; whatever still carries the home's owner
label is then removed by label) and the temp dir is deleted, also when tests or the setup failed.
Nothing here carries the `ktrdr.test=1` label: the bystanders look like a user's sandboxes, so
the harness's end-of-session sweep must leave them alone too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import cli
from tests.support.cli import KTRDR, cli_env

if TYPE_CHECKING:
    import psycopg

ENV_VAR = "KTRDR_BYSTANDERS"
UP, DOWN = "by-up", "by-down"
UP_TIMEOUT = 600
MARKER_TABLE = "bystander_marker"


def enabled() -> bool:
    return os.environ.get(ENV_VAR) == "1"


@dataclass(frozen=True)
class Snapshot:
    """What must not change while the suite runs."""

    # container id -> (name, status, State.StartedAt, RestartCount), by-up's
    containers: dict[str, tuple[str, str, str, int]]
    # network id -> Created, by-up's
    networks: dict[str, str]
    # volume name -> (ktrdr.instance, CreatedAt), every volume of the bystander home. For the
    # local driver CreatedAt is the ctime of the volume's top directory: a recreated volume has
    # a new one, and so has a volume a container creates or removes top-level entries in (a
    # start mounting into it, postgres writing postmaster.pid), which a running stack does not
    # do, nor a stopped one.
    volumes: dict[str, tuple[str, str]]


@dataclass
class Bystanders:
    """Another home with one running and one stopped sandbox, driven through the real CLI."""

    root: Path
    env: dict[str, str]
    unavailable: str | None = None  # why they were not set up (no engine): skip, fail in CI
    error: str | None = None  # the setup failed: the check fails with this
    snapshot: Snapshot | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # instance name -> marker row

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def repo(self) -> Path:
        return self.root / "work" / "ktrdr"

    def path_of(self, name: str) -> Path:
        return self.repo.parent / f"{self.repo.name}--{name}"

    def settings(self, name: str) -> dict[str, str]:
        """The instance's .env.sandbox (instance id, owner, DB port and password)."""
        from ktrdr.cli.sandbox.home.instance import read_env

        return read_env(self.path_of(name) / ".env.sandbox")

    def instance_id(self, name: str) -> str:
        return self.settings(name)["KTRDR_INSTANCE_ID"]

    def home_id(self) -> str | None:
        path = self.home / "home-id"
        return path.read_text().strip() if path.is_file() else None

    # --- commands ------------------------------------------------------------------------------
    def ktrdr(self, *args: str, cwd: Path | None = None, timeout: float = 180) -> str:
        result = cli.run([KTRDR, *args], cwd=cwd or self.repo, env=self.env, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"bystander home: `ktrdr {' '.join(args)}` exited {result.returncode}\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def docker(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _ids(self, kind: str, *labels: str) -> list[str]:
        listing = {"container": ["ps", "-aq"], "volume": ["volume", "ls", "-q"]}.get(
            kind, [kind, "ls", "-q"]
        )
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        return sorted(set(self.docker(*listing, *filters).split()))

    def _inspect(self, kind: str, ids: list[str]) -> list[dict[str, object]]:
        if not ids:
            return []
        data: list[dict[str, object]] = json.loads(self.docker(kind, "inspect", *ids))
        return data

    # --- what is on the engine -----------------------------------------------------------------
    def containers(self, name: str) -> dict[str, tuple[str, str, str, int]]:
        ids = self._ids("container", f"ktrdr.owner={self.home_id()}", self._instance(name))
        found: dict[str, tuple[str, str, str, int]] = {}
        for item in self._inspect("container", ids):
            state = item["State"]
            assert isinstance(state, dict)
            found[str(item["Id"])] = (
                str(item["Name"]),
                str(state["Status"]),
                str(state["StartedAt"]),
                int(str(item["RestartCount"])),
            )
        return found

    def networks(self, name: str) -> dict[str, str]:
        ids = self._ids("network", f"ktrdr.owner={self.home_id()}", self._instance(name))
        return {str(n["Id"]): str(n["Created"]) for n in self._inspect("network", ids)}

    def volumes(self) -> dict[str, tuple[str, str]]:
        names = self._ids("volume", f"ktrdr.owner={self.home_id()}")
        found: dict[str, tuple[str, str]] = {}
        for volume in self._inspect("volume", names):
            labels = volume.get("Labels") or {}
            assert isinstance(labels, dict)
            found[str(volume["Name"])] = (
                str(labels.get("ktrdr.instance")),
                str(volume["CreatedAt"]),
            )
        return found

    def _instance(self, name: str) -> str:
        return f"ktrdr.instance={self.instance_id(name)}"

    def take_snapshot(self) -> Snapshot:
        return Snapshot(self.containers(UP), self.networks(UP), self.volumes())

    # --- marker rows ---------------------------------------------------------------------------
    def _connect(self, name: str) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg

        settings = self.settings(name)
        return psycopg.connect(
            host="127.0.0.1",
            port=int(settings["KTRDR_DB_PORT"]),
            user="ktrdr",
            password=settings["KTRDR_DB_PASSWORD"],
            dbname="ktrdr",
            connect_timeout=10,
        )

    def write_marker(self, name: str) -> None:
        token = f"{name}-{secrets.token_hex(8)}"
        with self._connect(name) as conn:
            conn.execute(f"CREATE TABLE {MARKER_TABLE} (token text PRIMARY KEY)")
            conn.execute(f"INSERT INTO {MARKER_TABLE} (token) VALUES (%s)", (token,))
        self.tokens[name] = token

    def marker_present(self, name: str) -> bool:
        with self._connect(name) as conn:
            row = conn.execute(f"SELECT token FROM {MARKER_TABLE}").fetchall()
        return row == [(self.tokens[name],)]

    # --- lifecycle -----------------------------------------------------------------------------
    def set_up(self) -> None:
        from tests.support.project_copy import copy_project

        self.repo.mkdir(parents=True)
        copy_project(self.repo)
        self.ktrdr("sandbox", "init-shared")
        for name in (UP, DOWN):  # one after the other: on 2 cores two `up`s gain nothing
            self.ktrdr("sandbox", "create", name)
            self.ktrdr("sandbox", "up", cwd=self.path_of(name), timeout=UP_TIMEOUT)
            self.write_marker(name)
        self.ktrdr("sandbox", "down", cwd=self.path_of(DOWN))
        self.snapshot = self.take_snapshot()
        if not self.snapshot.containers or not self.snapshot.networks:
            raise AssertionError(f"{UP} is up but has no containers or networks: {self.snapshot}")
        for name in (UP, DOWN):
            if self.instance_id(name) not in {i for i, _ in self.snapshot.volumes.values()}:
                raise AssertionError(f"{name} has no volumes: {self.snapshot.volumes}")
        if self.containers(DOWN):
            raise AssertionError(f"{DOWN} still has containers after `down`")

    def tear_down(self) -> list[str]:
        """Destroy both, remove whatever still carries the home's owner label, delete the temp
        dir. Returns what went wrong (best effort: every step runs)."""
        problems: list[str] = []
        owner = self.home_id()
        if (self.home / "sandbox" / "instances.json").is_file():
            try:
                self.ktrdr("sandbox", "destroy", "--all", "--yes", "--force", timeout=600)
            except (AssertionError, subprocess.TimeoutExpired) as e:
                problems.append(str(e))
        if owner is not None and self.unavailable is None:
            for kind in ("container", "volume", "network"):
                try:
                    left = self._ids(kind, f"ktrdr.owner={owner}")
                    if left:
                        problems.append(f"{kind}s left after destroy, removed by label: {left}")
                        rm = ["rm", "-f", "-v"] if kind == "container" else [kind, "rm"]
                        self.docker(*rm, *left, check=False)
                except (AssertionError, subprocess.TimeoutExpired) as e:
                    problems.append(str(e))
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"{self.root} could not be removed entirely")
        return problems


def _engine_problem() -> str | None:
    from tests.support.engine import DockerEngine, probe_engine

    engine = probe_engine()
    return None if isinstance(engine, DockerEngine) else engine


def _say(config: pytest.Config, message: str) -> None:
    """One line on the real stderr, past pytest's capture (the setup runs inside a test's)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(f"bystanders: {message}", file=sys.stderr, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(f"bystanders: {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session", autouse=True)
def bystanders(request: pytest.FixtureRequest) -> Iterator[Bystanders | None]:
    """None unless KTRDR_BYSTANDERS=1. A setup failure is recorded (the check fails with it),
    never raised: it must not turn every test of the session into an error."""
    if not enabled():
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="ktrdr-bystanders-"))
    env = cli_env(root / "home", test=False)  # a user's home: no test marker, the default slots
    state = Bystanders(root=root, env=env)
    config = request.config
    try:
        state.unavailable = _engine_problem()
        if state.unavailable is None:
            _say(config, f"setting up another home's sandboxes {UP} (up) and {DOWN} in {root}")
            started = time.monotonic()
            try:
                state.set_up()
            except (Exception, pytest.fail.Exception) as e:  # also pytest-timeout's failure
                state.error = f"{type(e).__name__}: {e}"
                first = state.error.splitlines()[0][:200]
                _say(config, f"setup failed (test_zz_bystanders reports it): {first}")
            else:
                _say(config, f"ready in {time.monotonic() - started:.0f}s")
        yield state
    finally:
        problems = state.tear_down()
        for problem in problems:
            _say(config, f"teardown: {problem}")

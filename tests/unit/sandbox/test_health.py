"""The verdict of status and list from fresh observations: real HTTP servers stand in for the
API and a worker; container states are given as `docker ps` would report them."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE, StackFile, fallback
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.queries import ContainerState
from ktrdr.cli.sandbox.gate.health import StackFacts, container_problems, docker_state, observe
from ktrdr.cli.sandbox.gate.probes import DockerProbes
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from tests.support.docker_standin import Container, DockerStandIn
from tests.support.fake_api_server import standin_api_server
from tests.support.slots import TEST_SLOTS

INSTANCE = "ktrdr--feat-a"
SHORT_LIVED = fallback().short_lived  # migrate, e2e-tests: as the checked-in compose file says


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in probe for slot allocation only: every port free."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)


def state(service: str, status: str = "running", health: str | None = "healthy", **kw: object):
    return ContainerState(
        name=f"{INSTANCE}-{service}-1",
        service=service,
        state=status,
        health=health,
        instance_id=INSTANCE,
        exit_code=kw.get("exit_code"),  # type: ignore[arg-type]
        restart_count=0,
        image_id=None,
        ports=list(kw.get("ports", [])),  # type: ignore[call-overload]
    )


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def probes() -> Iterator[DockerProbes]:
    real = DockerProbes(Engine(), INSTANCE)
    try:
        yield real
    finally:
        real.close()


@contextlib.contextmanager
def stack() -> Iterator[tuple[int, int, object]]:
    """(api port, worker port, api state): an API that lists one backtest worker whose
    endpoint names its service, and that worker answering its /health."""
    with standin_api_server() as (api_url, api), standin_api_server() as (worker_url, worker):
        worker.every_body = {"status": "healthy"}
        api.workers[0]["endpoint"] = "http://backtest-worker-1:8080"
        yield int(api_url.rsplit(":", 1)[1]), int(worker_url.rsplit(":", 1)[1]), api


def facts(api_port: int) -> StackFacts:
    stack_file = StackFile(
        profiles={"backend": (), "backtest-worker-1": (), "migrate": (), "e2e-tests": ("e2e",)},
        worker_services={"backtest-worker-1": "backtest"},
        expected_workers={"backtest": 1},
        one_shot=frozenset({"migrate"}),
    )
    return StackFacts(INSTANCE, api_port, stack_file)


def test_everything_answering_is_running_with_no_reasons() -> None:
    with stack() as (api_port, worker_port, _), probes() as real:
        containers = [state("backend"), state("backtest-worker-1", ports=[worker_port])]
        seen = observe(containers, facts(api_port), real)
    assert (seen.state, seen.reasons) == ("running", [])
    assert seen.api_responding is True
    assert seen.workers == {"backtest": 1}


def test_a_dead_api_is_degraded_although_docker_still_says_healthy() -> None:
    with stack() as (_, worker_port, _), probes() as real:
        containers = [state("backend"), state("backtest-worker-1", ports=[worker_port])]
        seen = observe(containers, facts(closed_port()), real)
    assert seen.state == "degraded"
    assert seen.api_responding is False
    assert seen.reasons[0].startswith("API not responding")
    assert seen.workers is None  # the registry could not be asked


def test_a_stopped_worker_still_registered_is_not_counted() -> None:
    with stack() as (api_port, _, _), probes() as real:
        silent = closed_port()
        containers = [state("backend"), state("backtest-worker-1", ports=[silent])]
        seen = observe(containers, facts(api_port), real)
    assert seen.state == "degraded"
    assert seen.silent_workers == ["backtest-worker-1"]
    assert seen.workers == {}
    assert "backtest-worker-1 not answering its /health" in seen.reasons
    assert "workers registered: 0 of 1 backtest" in seen.reasons


def test_an_api_answering_for_another_instance_is_degraded() -> None:
    with stack() as (api_port, worker_port, api), probes() as real:
        api.health["instance_id"] = "someone-else"  # type: ignore[attr-defined]
        containers = [state("backend"), state("backtest-worker-1", ports=[worker_port])]
        seen = observe(containers, facts(api_port), real)
    assert seen.state == "degraded"
    assert "someone-else" in seen.reasons[0]


@pytest.mark.parametrize(
    ("container", "word", "reason"),
    [
        (state("backend", "restarting", None, exit_code=1), "degraded", "backend restarting"),
        (state("db", health="unhealthy"), "degraded", "db unhealthy"),
        (state("backtest-worker-1", "paused"), "paused", "backtest-worker-1 paused"),
        (state("grafana", "exited", None, exit_code=137), "degraded", "grafana exited (code 137)"),
    ],
)
def test_container_states_alone_say_degraded_or_paused_with_the_reason(
    container: ContainerState, word: str, reason: str
) -> None:
    containers = [state("backend"), container] if container.service != "backend" else [container]
    if container.service == "backend":
        containers.append(state("db"))
    assert docker_state(containers, short_lived=SHORT_LIVED) == word
    assert reason in container_problems(containers, short_lived=SHORT_LIVED)


def test_one_shot_services_never_make_an_instance_degraded() -> None:
    migrate = state("migrate", "exited", None, exit_code=0)
    assert docker_state([state("backend"), migrate], short_lived=SHORT_LIVED) == "running"
    assert docker_state([migrate], short_lived=SHORT_LIVED) == "stopped"


# --- list and status through the CLI ---------------------------------------------------------


def test_list_says_degraded_with_the_first_reason(repo: Path, docker: DockerStandIn) -> None:
    create_instance(name="a", cwd=repo)
    docker.containers = {
        "ktrdr--a": [
            Container("backend", "restarting"),
            Container("db", "running", "unhealthy"),
        ]
    }
    out = CliRunner().invoke(cli, ["sandbox", "list"])
    assert "degraded (backend restarting +1)" in out.stdout
    rows = json.loads(CliRunner().invoke(cli, ["sandbox", "list", "--json"]).stdout)
    assert rows[0]["status"] == "degraded"
    assert rows[0]["reasons"] == ["backend restarting", "db unhealthy"]


def test_status_verdict_agrees_with_a_dead_api_below_it(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = _slot_with_a_silent_api()
    created = create_instance(name="feat-a", cwd=repo, slot=slot)
    docker.containers = {
        "ktrdr--feat-a": [Container("backend", "running", "healthy"), Container("db", "running")]
    }
    monkeypatch.chdir(created.path)
    out = CliRunner().invoke(cli, ["sandbox", "status"])
    assert out.exit_code == 0, out.output
    assert "Status:" in out.stdout
    assert "degraded (API not responding" in out.stdout
    assert "1/2 healthy, 2 running" in out.stdout  # the backend no longer counts as healthy
    assert "not responding" in out.stdout.split("API:", 1)[1].splitlines()[0]
    data = json.loads(CliRunner().invoke(cli, ["sandbox", "status", "--json"]).stdout)
    assert data["status"] == "degraded"
    assert data["api_responding"] is False
    assert data["containers"]["healthy"] == 1
    assert data["reasons"][0].startswith("API")


SEEDED_STACK = """
services:
  db: {image: postgres}
  seed:
    image: app
    depends_on: {db: {condition: service_started}}
  backend:
    image: app
    depends_on: {seed: {condition: service_completed_successfully}}
"""


def test_a_one_shot_service_new_in_the_compose_file_is_not_counted_by_list_or_status(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`seed` is nowhere in the code: the compose file alone says it runs once, so its
    finished container neither makes the stack `degraded` nor counts as one of its containers."""
    created = create_instance(name="feat-a", cwd=repo, slot=_slot_with_a_silent_api())
    (created.path / COMPOSE_FILE).write_text(SEEDED_STACK)
    docker.containers = {
        INSTANCE: [
            Container("db", "running"),
            Container("seed", "exited", exit_code=0),
            Container("backend", "running"),
        ]
    }
    rows = json.loads(CliRunner().invoke(cli, ["sandbox", "list", "--json"]).stdout)
    assert (rows[0]["status"], rows[0]["reasons"]) == ("running", [])
    monkeypatch.chdir(created.path)
    data = json.loads(CliRunner().invoke(cli, ["sandbox", "status", "--json"]).stdout)
    assert data["containers"] == {"total": 2, "running": 2, "healthy": 1}  # no API: backend
    assert not [reason for reason in data["reasons"] if "seed" in reason]
    # Without the file (a half-gone instance) only the checked-in one-shot services are known.
    (created.path / COMPOSE_FILE).unlink()
    rows = json.loads(CliRunner().invoke(cli, ["sandbox", "list", "--json"]).stdout)
    assert (rows[0]["status"], rows[0]["reasons"]) == ("degraded", ["seed exited (code 0)"])


def test_status_of_a_stopped_instance_probes_nothing_and_says_stopped(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    monkeypatch.chdir(created.path)
    data = json.loads(CliRunner().invoke(cli, ["sandbox", "status", "--json"]).stdout)
    assert data["status"] == "stopped"
    assert data["reasons"] == []
    assert "api_responding" not in data
    assert data["last_gate"] is None


def _slot_with_a_silent_api() -> int:
    """A test slot whose API port nothing listens on (the user's sandboxes never use them)."""
    for slot in reversed(TEST_SLOTS):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", ports_for_slot(slot).api))
            except OSError:
                continue
        return slot
    raise AssertionError(f"every test slot's API port is in use ({TEST_SLOTS})")


# --- a hung engine ---------------------------------------------------------------------------


@pytest.mark.timing
@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (no engine)")
def test_a_hung_engine_makes_list_and_status_say_unknown_and_why(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = create_instance(name="feat-a", cwd=repo)
    # A real socket that accepts connections and never answers: an engine that hangs.
    hung = socket.socket(socket.AF_UNIX)
    path = tmp_path / "hung.sock"
    hung.bind(str(path))
    hung.listen(16)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        started = time.monotonic()
        listed = CliRunner().invoke(cli, ["sandbox", "list"])
        monkeypatch.chdir(created.path)
        status = CliRunner().invoke(cli, ["sandbox", "status", "--json"])
        elapsed = time.monotonic() - started
    finally:
        hung.close()
    assert listed.exit_code == 0
    assert "unknown" in listed.stdout
    assert "note: STATUS unknown: Docker engine at unix://" in listed.stderr
    assert "did not answer within" in listed.stderr
    data = json.loads(status.stdout)
    assert data["status"] == "unknown"
    assert "did not answer within" in data["reasons"][0]
    assert elapsed < 30  # generous: both commands gave up instead of waiting on the engine


def test_docker_s_lagging_starting_does_not_count_for_a_service_that_answers() -> None:
    with stack() as (api_port, worker_port, _), probes() as real:
        containers = [
            state("backend", health="starting"),
            state("backtest-worker-1", health="starting", ports=[worker_port]),
            state("db"),
        ]
        seen = observe(containers, facts(api_port), real)
    assert (seen.state, seen.reasons) == ("running", [])


def test_only_healthchecks_pending_is_starting_not_degraded() -> None:
    containers = [state("backend"), state("db", health="starting")]
    assert docker_state(containers, short_lived=SHORT_LIVED) == "starting"
    assert container_problems(containers, short_lived=SHORT_LIVED) == ["db health: starting"]
    restarting = state("grafana", "restarting", None)
    assert docker_state([*containers, restarting], short_lived=SHORT_LIVED) == "degraded"


class _LogsStandIn:
    """Stands in for the engine's `docker logs` only; HTTP goes to real sockets."""

    def __init__(self, real: DockerProbes, lines: list[str]) -> None:
        self.real, self.lines = real, lines

    def containers(self) -> list[ContainerState]:
        return []

    def http_get(self, url: str):  # type: ignore[no-untyped-def]
        return self.real.http_get(url)

    def logs(self, container: str, tail: int) -> list[str]:
        return self.lines[-tail:]

    def engine_view(self, container: str) -> list[str]:
        return []


def test_a_silent_api_names_the_exception_its_log_ends_in() -> None:
    broken = [
        "Traceback (most recent call last):",
        '  File "/app/ktrdr/api/app.py", line 90',
        "SyntaxError: invalid syntax",
    ]
    with stack() as (_, worker_port, _), probes() as real:
        containers = [state("backend"), state("backtest-worker-1", ports=[worker_port])]
        seen = observe(containers, facts(closed_port()), _LogsStandIn(real, broken))
    api_reason = next(r for r in seen.reasons if r.startswith("API not responding"))
    assert api_reason.endswith("; the backend's log ends in SyntaxError: invalid syntax")

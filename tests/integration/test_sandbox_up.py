"""`ktrdr sandbox up / down / destroy` on the real engine with the offline images.

Instances are created by the real CLI from a git copy of this project in tmp_path (so the compose
file and the bind-mounted source exist), under a temp KTRDR_HOME: the session-end sweep removes
what that home owns.
Slow: stacks are shared between assertions and the number of tests is kept small.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.slots import machine_slots
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from ktrdr.cli.sandbox.stack import compose
from ktrdr.envfile import read_env_file
from ktrdr.errors import ExitCode
from tests.support import cli
from tests.support.cli import KTRDR
from tests.support.project_copy import copy_project

pytestmark = pytest.mark.docker

UP_TIMEOUT = 420  # seconds for one `up` subprocess: two cold stacks share 2 cores


@dataclass
class Project:
    repo: Path
    env: dict[str, str]
    created: list[str]

    def ktrdr(
        self, *args: str, cwd: Path | None = None, timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = cli.run([KTRDR, *args], cwd=cwd or self.repo, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"ktrdr {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def create(self, name: str, *extra: str) -> Path:
        self.ktrdr("sandbox", "create", name, *extra, check=True)
        path = self.repo.parent / f"{self.repo.name}--{name}"
        self.created.append(read_env_file(path / ".env.sandbox")["KTRDR_INSTANCE_ID"])
        return path

    def up(self, instance: Path, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [KTRDR, "sandbox", "up", *extra],
            cwd=instance,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=UP_TIMEOUT)
    return process.returncode, out, err


def env_of(instance: Path) -> dict[str, str]:
    return read_env_file(instance / ".env.sandbox")


def health(instance: Path) -> dict[str, object]:
    port = ports_for_slot(int(env_of(instance)["KTRDR_SLOT"])).api
    response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5, trust_env=False)
    return dict(response.json())


def sweep(instance_ids: list[str]) -> None:
    for instance_id in instance_ids:
        try:
            compose.down(Engine(), instance_id, None, volumes=True)
        except Exception as e:  # the sweep must go on for the other instances
            print(f"sweep of {instance_id} failed: {e}", file=sys.stderr)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, docker_engine: object) -> Iterator[Project]:
    """A copy of this project with shared data; the engine check (skip locally, fail in CI)
    and the session-end sweep of its home's resources come from tests/support/engine.py."""
    base = tmp_path_factory.mktemp("sandbox-up")
    tag = uuid.uuid4().hex[:6]
    repo = copy_project(base / f"kt{tag}")
    env = cli.cli_env(base / "home", no_color=False)
    project = Project(repo, env, [])
    project.ktrdr("sandbox", "init-shared", check=True)
    try:
        yield project
    finally:
        sweep(project.created)


@pytest.fixture(autouse=True)
def same_home_as_the_cli(
    project: Project, isolated_ktrdr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """engine.ps/ownership.leftovers here count only what the CLI's home owns: ask as that home."""
    monkeypatch.setenv("KTRDR_HOME", project.env["KTRDR_HOME"])


def _bind_when_free(sock: socket.socket, port: int, timeout: float = 60) -> None:
    """A previous test's stack may still be releasing the port; the test needs it as its own."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_foreign_socket_on_a_slot_port_makes_up_refuse_before_any_container_exists(
    project: Project,
) -> None:
    instance = project.create("busy")
    instance_id = project.created[-1]
    slot = int(env_of(instance)["KTRDR_SLOT"])
    grafana = ports_for_slot(slot).grafana
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        _bind_when_free(sock, grafana)
        sock.listen()
        held = f"port {grafana} (grafana)"
        code, out, err = finish(project.up(instance))
    assert code == 1, err
    assert f"cannot start {instance_id}: slot {slot} {held}" in err
    assert "not by this instance" in err
    assert "Startability Gate" not in out
    # Nothing of the stack was made; only create's slot claim marker is there.
    left = ownership.leftovers(Engine(), instance_id)
    assert len(left) == 1, left
    assert left[0].endswith(machine_slots.MARKER_SUFFIX), left
    project.ktrdr("sandbox", "destroy", "--yes", cwd=instance, check=True)


@pytest.mark.timeout(1800)
def test_two_instances_up_concurrently_pass_the_gate_and_live_apart(project: Project) -> None:
    a, b = project.create("a"), project.create("b")
    id_a, id_b = project.created[-2:]

    started = time.monotonic()
    procs = [project.up(a), project.up(b)]
    results = [finish(p) for p in procs]
    for code, out, err in results:
        assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
        assert "Startability Gate: PASSED" in out
        assert "✓ Workers registered (2 backtest, 2 training)" in err
    print(f"two cold instances up concurrently: {time.monotonic() - started:.1f}s")

    # Each API answers on its own port with its own id; the report is on disk.
    assert health(a)["instance_id"] == id_a
    assert health(b)["instance_id"] == id_b
    report = json.loads((a / ".sandbox" / "gate-report.json").read_text())
    assert report["result"] == "passed"
    assert {c["check"] for c in report["checks"]} == {
        "database",
        "backend",
        "workers",
        "observability",
    }
    assert report["images"]["backend"].startswith("sha256:")

    # status shows the live stack and the last gate; logs show a service's output.
    status = json.loads(project.ktrdr("sandbox", "status", "--json", cwd=a, check=True).stdout)
    assert status["api_responding"] is True
    assert status["workers_registered"] == {"backtest": 2, "training": 2}
    assert status["last_gate"]["result"] == "passed"
    logs = project.ktrdr("sandbox", "logs", "backend", "--tail", "5", cwd=a, check=True)
    assert "backend" in logs.stdout

    # `up` on a running instance passes again (its own ports are no conflict); --json too.
    code, out, err = finish(project.up(a))
    assert code == 0, err
    assert "Startability Gate: PASSED" in out
    code, out, err = finish(project.up(b, "--json"))
    assert code == 0, err
    assert json.loads(out)["result"] == "passed"

    # `down` of one leaves the other serving; its volume survives for the next `up`.
    project.ktrdr("sandbox", "down", cwd=a, check=True)
    assert engine.ps(Engine(), id_a) == []
    assert any(item.startswith("volume ") for item in ownership.leftovers(Engine(), id_a))
    assert health(b)["status"] == "ok"

    # destroy, then create the same name on the same slot: a new password and a clean volume.
    slot_a, password_a = env_of(a)["KTRDR_SLOT"], env_of(a)["KTRDR_DB_PASSWORD"]
    project.ktrdr("sandbox", "destroy", "--yes", cwd=a, check=True)
    assert ownership.leftovers(Engine(), id_a) == []
    a = project.create("a", "--branch", "a", "--slot", slot_a)
    assert env_of(a)["KTRDR_DB_PASSWORD"] != password_a
    code, out, err = finish(project.up(a))
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert health(a)["database"] == "ok"

    # After destroy nothing carries either instance's label.
    for instance in (a, b):
        project.ktrdr("sandbox", "destroy", "--yes", cwd=instance, check=True)
    assert ownership.leftovers(Engine(), id_a) == []
    assert ownership.leftovers(Engine(), id_b) == []


@pytest.mark.timeout(900)
def test_a_worker_whose_command_exits_fails_the_gate_fast_naming_it_with_its_logs(
    project: Project,
) -> None:
    instance = project.create("crash")
    worker_main = instance / "ktrdr" / "workers" / "__main__.py"
    source = worker_main.read_text()
    future = "from __future__ import annotations\n"
    assert future in source
    worker_main.write_text(
        source.replace(
            future,
            future + "import sys\nprint('worker refuses to start', flush=True)\nsys.exit(3)\n",
            1,
        )
    )
    timeout = 300
    started = time.monotonic()
    code, out, err = finish(project.up(instance, "--timeout", str(timeout)))
    elapsed = time.monotonic() - started
    print(f"worker crash detected after {elapsed:.1f}s")
    assert code == ExitCode.GATE_FAILED, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Startability Gate: FAILED" in out
    assert "worker" in out
    assert "exited with code 3" in out
    assert "worker refuses to start" in out  # the failing service's log tail
    assert "Containers:" in out
    assert elapsed < timeout / 2, f"took {elapsed:.0f}s: the gate waited instead of failing fast"
    report = json.loads((instance / ".sandbox" / "gate-report.json").read_text())
    assert report["result"] == "failed"
    assert report["failing_service"].endswith(tuple("12"))
    assert "worker" in report["failing_service"]
    project.ktrdr("sandbox", "destroy", "--yes", "--force", cwd=instance, check=True)
    assert ownership.leftovers(Engine(), project.created[-1]) == []


def _pause_a_worker_once_it_runs(instance_id: str, process: subprocess.Popen[str]) -> str:
    """Polls the instance's containers (a state, not a delay) until a worker runs, pauses it,
    and returns its name; fails if `up` ended first."""
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        assert time.monotonic() < deadline, process.communicate()
        assert process.poll() is None, process.communicate()
        running = [
            c.name
            for c in engine.ps(Engine(), instance_id)
            if "worker" in c.service and c.state == "running"
        ]
        if running and subprocess.run(["docker", "pause", running[0]], check=False).returncode == 0:
            assert process.poll() is None, "the gate ended before the worker was paused"
            return running[0]
        time.sleep(0.2)  # the poll interval only: the wait ends on the state above


@pytest.mark.timing
@pytest.mark.timeout(900)
def test_ctrl_c_during_up_records_an_interrupted_gate_and_a_new_up_passes(
    project: Project,
) -> None:
    """The Ctrl-C must land while the gate still waits, however loaded the machine: a worker is
    paused the moment it runs (long before it can register), so the gate cannot pass until the
    next `up` thaws it. No sleep decides the timing."""
    instance = project.create("ctrlc")
    instance_id = project.created[-1]
    process = project.up(instance)
    paused = _pause_a_worker_once_it_runs(instance_id, process)
    process.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
    code, _, err = finish(process)
    assert code == 130, err
    assert "ktrdr sandbox up" in err  # the hint: how to resume
    report = json.loads((instance / ".sandbox" / "gate-report.json").read_text())
    assert report["result"] == "interrupted"

    code, out, err = finish(project.up(instance))
    assert code == 0, err
    assert f"Resumed paused containers: {paused}" in out + err
    assert "Startability Gate: PASSED" in out + err
    project.ktrdr("sandbox", "destroy", "--yes", cwd=instance, check=True)

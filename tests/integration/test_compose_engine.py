"""The compose wrapper against the real engine: owner-and-instance label queries and removal,
starting and cancelling a stack, container logs. Every resource carries this test's own owner
label (its tmp KTRDR_HOME's id), so nothing of anyone else is counted or removed."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE
from ktrdr.cli.sandbox.engine import logs as container_logs
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.instance import read_env
from ktrdr.cli.sandbox.instances.locate import Instance
from ktrdr.cli.sandbox.stack import compose

SMALL_IMAGE = "ktrdr-offline/debian:bookworm"


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


@pytest.fixture
def labelled_resources(docker_engine: object):
    """A container, volume and network labelled like an instance's, removed in any case."""
    if not _docker("images", "-q", SMALL_IMAGE).strip():
        pytest.skip(f"{SMALL_IMAGE} not built (make images-offline)")
    instance = f"ktrdr-test-{uuid.uuid4().hex[:8]}"
    labels = [
        *("--label", f"ktrdr.owner={home_id()}"),
        *("--label", f"ktrdr.instance={instance}"),
        *("--label", "ktrdr.test=1"),
    ]
    _docker("network", "create", *labels, f"{instance}_default")
    _docker("volume", "create", *labels, f"{instance}_data")
    _docker(
        "run", "-d", "--name", f"{instance}-sleeper-1", *labels,
        "--label", f"com.docker.compose.project={instance}",
        "--label", "com.docker.compose.service=sleeper",
        "--network", f"{instance}_default", "-v", f"{instance}_data:/data",
        "-p", "127.0.0.1::9", SMALL_IMAGE, "sleep", "300",
    )  # fmt: skip
    try:
        yield instance
    finally:
        subprocess.run(["docker", "rm", "-f", f"{instance}-sleeper-1"], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", f"{instance}_data"], capture_output=True)
        subprocess.run(["docker", "network", "rm", f"{instance}_default"], capture_output=True)


@pytest.mark.docker
def test_ps_and_containers_by_instance_see_the_labelled_container(labelled_resources: str) -> None:
    instance = labelled_resources
    (state,) = engine.ps(Engine(), instance)
    assert (state.service, state.state, state.instance_id) == ("sleeper", "running", instance)
    assert state.image_id
    assert state.image_id.startswith("sha256:")
    assert len(state.ports) == 1
    grouped = engine.containers_by_instance(Engine())
    assert [c.name for c in grouped[instance]] == [f"{instance}-sleeper-1"]
    assert grouped[instance][0].ports == state.ports


@pytest.mark.docker
def test_down_without_a_compose_file_removes_everything_labelled(
    labelled_resources: str,
) -> None:
    instance = labelled_resources
    assert sorted(ownership.leftovers(Engine(), instance)) == [
        f"container {instance}-sleeper-1",
        f"network {instance}_default",
        f"volume {instance}_data",
    ]
    compose.down(Engine(), instance, None, volumes=False)
    assert ownership.leftovers(Engine(), instance) == [f"volume {instance}_data"]
    compose.down(Engine(), instance, None, volumes=True)
    assert ownership.leftovers(Engine(), instance) == []
    assert engine.ps(Engine(), instance) == []


@pytest.mark.docker
def test_a_starting_stack_reports_compose_errors_as_one_line(tmp_path: Path) -> None:
    (tmp_path / COMPOSE_FILE).write_text(
        "services:\n  app:\n    image: x\n"
        "    ports: ['127.0.0.1:${MISSING_PORT:?MISSING_PORT is not set}:80']\n"
    )
    (tmp_path / ".env.sandbox").write_text(
        "KTRDR_INSTANCE_ID=ktrdr-test-x\nCOMPOSE_PROJECT_NAME=ktrdr-test-x\n"
    )
    stack = compose.StartingStack(_unregistered_instance(tmp_path), model=tmp_path / COMPOSE_FILE)
    stack.wait(60)
    assert stack.done()
    error = stack.error()
    assert error is not None
    assert error.startswith("starting instance ktrdr-test-x failed (exit")
    assert "MISSING_PORT is not set" in error
    stack.cancel()  # a finished start is left alone


@pytest.mark.timing
@pytest.mark.docker
def test_cancelling_a_starting_stack_stops_compose(tmp_path: Path) -> None:
    if not _docker("images", "-q", SMALL_IMAGE).strip():
        pytest.skip(f"{SMALL_IMAGE} not built (make images-offline)")
    project = f"ktrdr-test-{uuid.uuid4().hex[:8]}"
    # `app` waits for a dependency that never becomes healthy, so `up` blocks until cancelled.
    (tmp_path / COMPOSE_FILE).write_text(
        f"services:\n"
        f"  never:\n    image: {SMALL_IMAGE}\n    command: [sleep, '300']\n"
        f"    labels: {{ktrdr.test: '1', ktrdr.instance: {project}, ktrdr.owner: {home_id()}}}\n"
        f"    healthcheck: {{test: ['CMD', 'false'], interval: 60s, start_period: 300s}}\n"
        f"  app:\n    image: {SMALL_IMAGE}\n    command: [sleep, '300']\n"
        f"    labels: {{ktrdr.test: '1', ktrdr.instance: {project}, ktrdr.owner: {home_id()}}}\n"
        f"    depends_on: {{never: {{condition: service_healthy}}}}\n"
        # The default network carries the labels too, so the label sweep removes it.
        f"networks:\n  default:\n"
        f"    labels: {{ktrdr.test: '1', ktrdr.instance: {project}, ktrdr.owner: {home_id()}}}\n"
    )
    (tmp_path / ".env.sandbox").write_text(
        f"KTRDR_INSTANCE_ID={project}\nCOMPOSE_PROJECT_NAME={project}\n"
    )
    try:
        stack = compose.StartingStack(
            _unregistered_instance(tmp_path), model=tmp_path / COMPOSE_FILE
        )
        stack.wait(5)
        assert not stack.done()
        started = time.monotonic()
        stack.cancel()
        assert stack.done()
        assert time.monotonic() - started < 15
    finally:
        compose.down(Engine(), project, None, volumes=True)
    assert ownership.leftovers(Engine(), project) == []


@pytest.mark.timing
@pytest.mark.docker
def test_container_logs_interleave_stdout_and_stderr_as_written() -> None:
    script = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print(f'out {i}', flush=True); time.sleep(0.05)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True); time.sleep(0.05)\n"
    )
    name = f"ktrdr-test-logs-{os.getpid()}"
    image = "ktrdr-offline/python-base:bookworm"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        pytest.skip(f"{image} not built (make images-offline)")
    subprocess.run(
        [
            "docker",
            "run",
            "--name",
            name,
            "--label",
            "ktrdr.test=1",
            image,
            "python3",
            "-c",
            script,
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    try:
        assert container_logs.container_logs(Engine(), name, tail=10) == [
            "out 0", "err 0", "out 1", "err 1", "out 2", "err 2",
        ]  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.mark.docker
def test_the_engine_s_view_of_a_silent_container_names_its_exit_code_and_health_log() -> None:
    """What the gate shows when the failing service logged nothing."""
    name = f"ktrdr-test-silent-{os.getpid()}"
    if subprocess.run(["docker", "image", "inspect", SMALL_IMAGE], capture_output=True).returncode:
        pytest.skip(f"{SMALL_IMAGE} not built (make images-offline)")
    run = ["docker", "run", "-d", "--name", name, "--label", "ktrdr.test=1"]
    health = ["--health-cmd", "echo db refused; exit 1", "--health-interval", "1s"]
    subprocess.run(
        [*run, *health, SMALL_IMAGE, "sh", "-c", "sleep 3; exit 3"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    try:
        deadline = time.monotonic() + 60
        while "exited" not in _docker("inspect", "-f", "{{.State.Status}}", name):
            assert time.monotonic() < deadline, "the container did not exit"
            time.sleep(0.5)
        assert container_logs.container_logs(Engine(), name, tail=10) == []
        view = container_logs.engine_view(Engine(), name)
        assert view[0].startswith("state exited, exit code 3, OOM-killed no, finished at ")
        assert "health check exit 1: db refused" in view[1:]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _unregistered_instance(root: Path) -> Instance:
    """An instance that only has its env file (no registry entry, no slot)."""
    env = read_env(root / ".env.sandbox")
    return Instance(env["KTRDR_INSTANCE_ID"], 1, root, env, None)

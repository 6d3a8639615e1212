"""The compose wrapper: argv, env, parsing of docker output, compose-file facts, and (marker
docker) label-based queries and removal against the real engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktrdr.cli.sandbox import compose
from ktrdr.cli.sandbox.errors import DockerUnavailableError

COMPOSE_TEXT = """
services:
  db:
    image: postgres
    labels: {ktrdr.instance: x}
  migrate:
    image: app
  backend:
    image: app
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
  backtest-worker-1:
    image: app
    labels:
      ktrdr.instance: x
      ktrdr.worker-type: backtest
  backtest-worker-2:
    image: app
    labels: ["ktrdr.instance=x", "ktrdr.worker-type=backtest"]
  training-worker-1:
    image: app
    deploy: {replicas: 2}
    labels: {ktrdr.worker-type: training}
  e2e-tests:
    image: app
    profiles: [e2e]
    labels: {ktrdr.worker-type: backtest}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / compose.COMPOSE_FILE).write_text(COMPOSE_TEXT)
    (tmp_path / ".env.sandbox").write_text("KTRDR_INSTANCE_ID=x\nKTRDR_API_PORT=8003\n")
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_engine_check() -> None:
    compose._engine_checked.cache_clear()


def test_compose_argv_names_project_env_file_and_compose_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KTRDR_IMAGES", raising=False)
    env = {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "ktrdr--a-0123abcd"}
    argv = compose.compose_argv(root, env)
    assert argv == [
        "docker",
        "compose",
        "-p",
        "ktrdr--a-0123abcd",
        "--env-file",
        str(root / ".env.sandbox"),
        "-f",
        str(root / "docker-compose.sandbox.yml"),
        "--project-directory",
        str(root),
    ]


def test_offline_images_add_the_offline_env_file_after_the_instance_env_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KTRDR_IMAGES", raising=False)
    argv = compose.compose_argv(root, {"KTRDR_IMAGES": "offline", "COMPOSE_PROJECT_NAME": "a-1"})
    env_files = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--env-file"]
    assert env_files == [str(root / ".env.sandbox"), str(root / "docker/images-offline.env")]


def test_the_instance_env_file_decides_the_images_whatever_the_shell_exports(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRDR_IMAGES", "offline")
    upstream = {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "a-1"}
    assert "images-offline" not in " ".join(compose.compose_argv(root, upstream))
    assert "KTRDR_IMAGES" not in compose.compose_env(upstream)
    monkeypatch.setenv("KTRDR_IMAGES", "upstream")
    offline = {"KTRDR_IMAGES": "offline", "COMPOSE_PROJECT_NAME": "a-1"}
    assert "docker/images-offline.env" in " ".join(compose.compose_argv(root, offline))
    assert "KTRDR_IMAGES" not in compose.compose_env(offline)


def test_a_shell_images_mode_that_differs_from_the_instance_is_named_with_the_way_to_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_IMAGES", "offline")
    warning = compose.images_mismatch({"KTRDR_IMAGES": "upstream"})
    assert warning is not None
    assert "uses upstream" in warning and "KTRDR_IMAGES=offline ktrdr sandbox init" in warning
    assert compose.images_mismatch({"KTRDR_IMAGES": "offline"}) is None
    monkeypatch.delenv("KTRDR_IMAGES")
    assert compose.images_mismatch({"KTRDR_IMAGES": "upstream"}) is None


def test_exported_instance_variables_cannot_override_the_env_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_API_PORT", "8009")
    monkeypatch.setenv("KTRDR_TEST", "1")
    env = compose.compose_env({"KTRDR_API_PORT": "8003", "KTRDR_INSTANCE_ID": "a"})
    assert "KTRDR_API_PORT" not in env
    assert env["KTRDR_TEST"] == "1"
    assert env["PATH"] == os.environ["PATH"]


def test_worker_services_come_from_labels_in_either_form_and_skip_profiles(root: Path) -> None:
    assert compose.worker_services(root) == {
        "backtest-worker-1": "backtest",
        "backtest-worker-2": "backtest",
        "training-worker-1": "training",
    }


def test_expected_workers_counts_replicas(root: Path) -> None:
    assert compose.expected_workers(root) == {"backtest": 2, "training": 2}


def test_one_shot_services_are_those_waited_on_for_successful_completion(root: Path) -> None:
    assert compose.one_shot_services(root) == {"migrate"}


def test_default_services_exclude_profiled_ones(root: Path) -> None:
    assert "e2e-tests" not in compose.default_services(root)
    assert "e2e-tests" in compose.services(root)


def test_an_unreadable_compose_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / compose.COMPOSE_FILE).write_text("services: [unclosed")
    with pytest.raises(compose.SandboxError, match="not valid YAML"):
        compose.expected_workers(tmp_path)
    with pytest.raises(compose.SandboxError, match="is missing: this checkout has no stack"):
        compose.expected_workers(tmp_path / "missing")
    (tmp_path / "a-dir" / compose.COMPOSE_FILE).mkdir(parents=True)
    with pytest.raises(compose.SandboxError, match="cannot read"):
        compose.expected_workers(tmp_path / "a-dir")


def test_ps_lines_give_state_health_exit_code_and_host_ports() -> None:
    line = "\t".join(
        [
            "abc",
            "ktrdr--a-backend-1",
            "running",
            "Up 5 seconds (healthy)",
            "ktrdr--a",
            "backend",
            "127.0.0.1:8001->8000/tcp, 127.0.0.1:5010-5011->8080/tcp",
        ]
    )
    state = compose._state_from_ps_line(line)
    assert state is not None
    assert (state.name, state.service, state.state, state.health) == (
        "ktrdr--a-backend-1",
        "backend",
        "running",
        "healthy",
    )
    assert state.instance_id == "ktrdr--a"
    assert state.ports == [5010, 5011, 8001]
    exited = compose._state_from_ps_line("id\tn\texited\tExited (3) 2 seconds ago\ta\tw\t")
    assert exited is not None and exited.exit_code == 3 and exited.health is None
    starting = compose._state_from_ps_line("i\tn\trunning\tUp 1s (health: starting)\ta\tdb\t")
    assert starting is not None and starting.health == "starting"
    assert compose._state_from_ps_line("garbage") is None


def test_inspect_output_gives_restart_count_image_and_published_ports() -> None:
    item = {
        "Name": "/ktrdr--a-db-1",
        "Image": "sha256:123",
        "RestartCount": 2,
        "State": {"Status": "exited", "ExitCode": 1, "Health": {"Status": "unhealthy"}},
        "Config": {"Labels": {"com.docker.compose.service": "db", "ktrdr.instance": "ktrdr--a"}},
        "NetworkSettings": {"Ports": {}},
        "HostConfig": {"PortBindings": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5433"}]}},
    }
    state = compose._state_from_inspect(item)
    assert state is not None
    assert state.as_dict() == {
        "name": "ktrdr--a-db-1",
        "service": "db",
        "state": "exited",
        "health": "unhealthy",
        "exit_code": 1,
        "restart_count": 2,
        "image_id": "sha256:123",
        "ports": [5433],
        "started_at": None,
    }
    oneoff = {**item, "Config": {"Labels": {"com.docker.compose.oneoff": "True"}}}
    assert compose._state_from_inspect(oneoff) is None


def test_missing_docker_cli_is_one_actionable_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert compose.engine_reachable() is False
    with pytest.raises(DockerUnavailableError, match="Docker is not installed"):
        compose.ensure_engine()


def test_unreachable_daemon_names_the_address_and_says_to_start_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not any((Path(p) / "docker").exists() for p in os.environ["PATH"].split(":")):
        pytest.skip("docker CLI not installed")
    address = f"unix://{tmp_path}/no-such.sock"
    monkeypatch.setenv("DOCKER_HOST", address)
    assert compose.engine_reachable() is False
    with pytest.raises(DockerUnavailableError) as raised:
        compose.ensure_engine()
    assert str(raised.value) == (
        f"Docker engine not reachable at {address}: start Docker and retry"
    )


# --- real engine ---------------------------------------------------------------------------

SMALL_IMAGE = "ktrdr-offline/debian:bookworm"


def test_timestamped_streams_merge_in_time_order_without_their_stamps() -> None:
    stdout = (
        "2026-11-27T08:00:00.000000001Z GET /health 200\n"
        "2026-11-27T08:00:02.000000000Z GET /workers 200\n"
    )
    stderr = (
        "2026-11-27T08:00:01.000000000Z Traceback (most recent call last):\n"
        "2026-11-27T08:00:01.000000000Z ValueError: boom\n"
        "2026-11-27T08:00:03.000000000Z \n"
    )
    assert compose.merge_timestamped(stdout, stderr) == [
        "GET /health 200",
        "Traceback (most recent call last):",
        "ValueError: boom",
        "GET /workers 200",
        "",
    ]


def test_the_engine_s_view_names_exit_code_oom_kill_error_and_health_log() -> None:
    state = {
        "Status": "exited",
        "ExitCode": 137,
        "OOMKilled": True,
        "Error": "",
        "FinishedAt": "2026-12-03T02:00:00Z",
        "Health": {
            "Log": [
                {"ExitCode": 1, "Output": "pg_isready: no response\n"},
                {"ExitCode": 1, "Output": "FATAL:  password authentication failed\n  for user"},
            ]
        },
    }
    lines = compose.describe_state(state)
    assert lines[0] == (
        "state exited, exit code 137, OOM-killed yes, finished at 2026-12-03T02:00:00Z"
    )
    assert lines[-1] == ("health check exit 1: FATAL: password authentication failed for user")
    assert compose.describe_state({}, "Error: No such container: x\n") == [
        "no such container (Error: No such container: x)"
    ]

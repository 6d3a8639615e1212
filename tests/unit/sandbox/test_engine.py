"""The engine's answers parsed (docker ps lines, docker inspect, docker logs streams) and the
engine check's one-line errors; no engine needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.errors import DockerUnavailableError
from ktrdr.cli.sandbox.engine import logs as container_logs
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.handle import Engine


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
    state = engine._state_from_ps_line(line)
    assert state is not None
    assert (state.name, state.service, state.state, state.health) == (
        "ktrdr--a-backend-1",
        "backend",
        "running",
        "healthy",
    )
    assert state.instance_id == "ktrdr--a"
    assert state.ports == [5010, 5011, 8001]
    exited = engine._state_from_ps_line("id\tn\texited\tExited (3) 2 seconds ago\ta\tw\t")
    assert exited is not None
    assert exited.exit_code == 3
    assert exited.health is None
    starting = engine._state_from_ps_line("i\tn\trunning\tUp 1s (health: starting)\ta\tdb\t")
    assert starting is not None
    assert starting.health == "starting"
    assert engine._state_from_ps_line("garbage") is None


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
    state = engine._state_from_inspect(item)
    assert state is not None
    assert state.to_json() == {
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
    assert engine._state_from_inspect(oneoff) is None


def test_missing_docker_cli_is_one_actionable_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert engine.engine_reachable(Engine()) is False
    with pytest.raises(DockerUnavailableError, match="Docker is not installed"):
        engine.ensure_engine(Engine())


def test_unreachable_daemon_names_the_address_and_says_to_start_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not any((Path(p) / "docker").exists() for p in os.environ["PATH"].split(":")):
        pytest.skip("docker CLI not installed")
    address = f"unix://{tmp_path}/no-such.sock"
    monkeypatch.setenv("DOCKER_HOST", address)
    assert engine.engine_reachable(Engine()) is False
    with pytest.raises(DockerUnavailableError) as raised:
        engine.ensure_engine(Engine())
    assert str(raised.value) == (
        f"Docker engine not reachable at {address}: start Docker and retry"
    )


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
    assert container_logs.merge_timestamped(stdout, stderr) == [
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
    lines = container_logs.describe_state(state)
    assert lines[0] == (
        "state exited, exit code 137, OOM-killed yes, finished at 2026-12-03T02:00:00Z"
    )
    assert lines[-1] == ("health check exit 1: FATAL: password authentication failed for user")
    assert container_logs.describe_state({}, "Error: No such container: x\n") == [
        "no such container (Error: No such container: x)"
    ]

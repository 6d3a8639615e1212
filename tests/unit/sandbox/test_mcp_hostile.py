"""A hostile agent's arguments through the SDK's own stdio client and the real `ktrdr sandbox
mcp` server (no Docker engine: DOCKER_HOST points nowhere): every bad argument is a tool error
with exit_code 2 and one line, never a JSON-RPC error, and the server keeps serving."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession

from tests.support.git_repos import git, make_repo
from tests.support.mcp_session import PROJECT, create, drive, error_of

HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("sandbox_up", {"timeout": True}, "'timeout' must be a number"),
    ("sandbox_up", {"timeout": "300"}, "'timeout' must be a number"),
    ("sandbox_up", {"timeout": 0}, "'timeout' must be at least 1"),
    ("sandbox_up", {"gate": "no"}, "'gate' must be true or false"),
    ("sandbox_logs", {"tail": 1.5}, "'tail' must be an integer"),
    ("sandbox_logs", {"tail": True}, "'tail' must be an integer"),
    ("sandbox_logs", {"service": "back\x00end"}, "control character (U+0000"),
    ("sandbox_test_e2e", {"pytest_args": ["-k", "a\x00b"]}, "control character (U+0000"),
    ("sandbox_test_e2e", {"pytest_args": ["-k", "a" * 200_000]}, "200000 characters long"),
    ("sandbox_test_e2e", {"pytest_args": ["--co"]}, "does not pass pytest option '--co'"),
    ("sandbox_test_e2e", {"pytest_args": ["--help"]}, "does not pass pytest option"),
    ("sandbox_test_e2e", {"pytest_args": ["--version"]}, "does not pass pytest option"),
    ("sandbox_test_e2e", {"pytest_args": ["--junitxml=/tmp/x"]}, "does not pass pytest option"),
    ("sandbox_test_e2e", {"pytest_args": ["--collect-o"]}, "does not pass pytest option"),
    ("sandbox_test_e2e", {"pytest_args": ["../../etc"]}, "is not a test under tests/e2e/"),
    ("operations_get", {"operation_id": "o" * 100_000}, "100000 characters long (at most 256)"),
    ("operations_get", {"operation_id": None}, "argument 'operation_id' is required"),
    ("sandbox_status", {"x" * 100_000: 1}, "takes no argument 'xxxx"),
]


@pytest.fixture
def instance_root(tmp_path: Path) -> Path:
    checkout = make_repo(tmp_path / "work" / "ktrdr")
    shutil.copy(PROJECT / "docker-compose.sandbox.yml", checkout / "docker-compose.sandbox.yml")
    git(checkout, "add", "docker-compose.sandbox.yml")
    git(checkout, "commit", "-q", "-m", "stack")
    return Path(create("feat", checkout)["path"])


def test_hostile_arguments_are_usage_errors_and_the_server_keeps_serving(
    instance_root: Path,
) -> None:
    async def steps(client: ClientSession) -> tuple[list[Any], Any]:
        results = [await client.call_tool(tool, arguments) for tool, arguments, _ in HOSTILE]
        return results, await client.call_tool("sandbox_status", {})

    results, status = drive([], instance_root, steps)
    for (tool, _arguments, expected), result in zip(HOSTILE, results, strict=True):
        message, code = error_of(result)
        assert code == 2, (tool, message)
        assert expected in message, (tool, message)
        assert len(message) < 400, tool
        assert result.structured_content["result"] is None
    assert not status.is_error
    assert status.structured_content["instance_id"] == "ktrdr--feat"


def test_null_is_the_default_so_the_call_fails_or_runs_exactly_as_without_it(
    instance_root: Path,
) -> None:
    pairs = [
        ("sandbox_up", {"timeout": None}),
        ("sandbox_up", {"gate": None, "build": None}),
        ("sandbox_resume", {"timeout": None}),
        ("sandbox_logs", {"tail": None, "service": None}),
        ("sandbox_test_e2e", {"pytest_args": None}),
    ]

    async def steps(client: ClientSession) -> list[tuple[Any, Any]]:
        return [
            (await client.call_tool(tool, arguments), await client.call_tool(tool, {}))
            for tool, arguments in pairs
        ]

    for (tool, _), (with_null, without) in zip(pairs, drive([], instance_root, steps), strict=True):
        assert error_of(with_null) == error_of(without), tool  # no engine here: both refused
        assert error_of(with_null)[1] != 2, tool

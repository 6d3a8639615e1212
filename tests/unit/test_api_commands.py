from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from tests.support.fake_api_server import StandinApiState, standin_api_server
from tests.support.instances import edit_view, register_instance


@pytest.fixture
def api() -> Iterator[tuple[str, StandinApiState]]:
    with standin_api_server() as server:
        yield server


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_health_prints_instance_and_status(api: tuple[str, StandinApiState]) -> None:
    url, _ = api
    result = CliRunner().invoke(cli, ["-u", url, "health"])
    assert result.exit_code == 0, result.output
    assert "ktrdr--feat-a" in result.stdout
    assert "Database:" in result.stdout


def test_health_json_is_the_server_body(api: tuple[str, StandinApiState]) -> None:
    url, state = api
    result = CliRunner().invoke(cli, ["-u", url, "health", "--json"])
    assert json.loads(result.stdout) == state.health


def test_degraded_health_exits_non_zero(api: tuple[str, StandinApiState]) -> None:
    url, state = api
    state.health.update(status="degraded", database="error")
    result = CliRunner().invoke(cli, ["-u", url, "health"])
    assert result.exit_code == 1
    assert "error" in result.stdout


def test_port_flag_reaches_server_on_that_port(api: tuple[str, StandinApiState]) -> None:
    url, _ = api
    port = url.rsplit(":", 1)[1]
    result = CliRunner().invoke(cli, ["-p", port, "workers", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["worker_type"] == "backtest"


def test_workers_list_table(api: tuple[str, StandinApiState]) -> None:
    url, _ = api
    result = CliRunner().invoke(cli, ["-u", url, "workers", "list"])
    assert result.exit_code == 0
    assert "WORKER" in result.stdout
    assert "backtest-1" in result.stdout


def test_operations_list_and_show(api: tuple[str, StandinApiState]) -> None:
    url, _ = api
    listed = CliRunner().invoke(cli, ["-u", url, "operations", "list"])
    assert "op-1" in listed.stdout
    shown = CliRunner().invoke(cli, ["-u", url, "operations", "show", "op-1", "--json"])
    assert json.loads(shown.stdout)["result"] == {"trades": 3}


def test_missing_operation_shows_status_and_server_message(
    api: tuple[str, StandinApiState],
) -> None:
    url, _ = api
    result = CliRunner().invoke(cli, ["-u", url, "operations", "show", "nope"])
    assert result.exit_code == 1
    assert "HTTP 404" in result.stderr
    assert "operation not found" in result.stderr
    assert "Traceback" not in result.output


def test_operations_start_with_wait_polls_until_completed(
    api: tuple[str, StandinApiState],
) -> None:
    url, state = api
    state.polls_until_complete = 2
    result = CliRunner().invoke(
        cli, ["-u", url, "operations", "start", "backtest", "--symbol", "AAPL", "--wait", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
    assert state.posted == [
        {"operation_type": "backtest", "params": {"symbol": "AAPL", "timeframe": "1d"}}
    ]


def test_a_completed_operation_prints_no_error_line(api: tuple[str, StandinApiState]) -> None:
    url, _ = api
    argv = ["-u", url, "operations", "start", "backtest", "--symbol", "AAPL", "--wait"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert "Status: completed" in " ".join(result.stdout.split())
    assert not any(line.startswith("Error") for line in result.output.splitlines())


def test_a_failed_operation_exits_1_with_the_reason_as_one_error_line(
    api: tuple[str, StandinApiState],
) -> None:
    url, state = api
    state.fails_with = "no data for ZZZZ"
    argv = ["-u", url, "operations", "start", "backtest", "--symbol", "ZZZZ", "--wait"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: operation op-2 failed: no data for ZZZZ; details: `ktrdr operations show op-2`"
    ]


def test_connection_refused_is_one_line_naming_the_url() -> None:
    port = _free_port()
    result = CliRunner().invoke(cli, ["-p", str(port), "health"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"http://localhost:{port}" in lines[0]
    assert "ktrdr sandbox status" in lines[0]


@pytest.mark.parametrize("bad", ["0", "70000", "abc"])
def test_bad_port_flag_exits_2(bad: str) -> None:
    result = CliRunner().invoke(cli, ["-p", bad, "health"])
    assert result.exit_code == 2
    assert "port" in result.stderr


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("http://[::1", "http(s)://HOST[:PORT]"),
        ("http://x y", "http(s)://HOST[:PORT]"),
        ("http://x:0", "expected 1-65535"),
        ("http://x:99999", "expected 1-65535"),
    ],
)
def test_bad_url_flag_is_a_usage_error_not_a_traceback(bad: str, expected: str) -> None:
    result = CliRunner().invoke(cli, ["-u", bad, "config", "show"])
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "--url" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("name", "value"), [("KTRDR_API_PORT", "abc"), ("KTRDR_API_URL", "http://[::1")]
)
def test_bad_env_value_exits_2_with_one_error_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2
    # The command line is fine, so no `Usage:` header: just the error and what to do.
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 1
    assert f"env {name}" in result.stderr
    assert "fix or unset it" in result.stderr


def test_an_edited_env_file_port_is_one_error_line_naming_the_recorded_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_instance(tmp_path, slot=7)
    edit_view(tmp_path, "KTRDR_API_PORT", "80x7 # slot 7")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 1
    assert ".env.sandbox says KTRDR_API_PORT=80x7 but this home recorded 8007" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_env_file_quotes_and_comment_are_read_like_compose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_instance(tmp_path, slot=7)
    edit_view(tmp_path, "KTRDR_API_PORT", '"8007" # comment')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["api_url"] == "http://localhost:8007"


def test_non_utf8_env_file_is_one_line_with_a_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_instance(tmp_path, slot=7)
    (tmp_path / ".env.sandbox").write_bytes(b"KTRDR_API_PORT=\xff\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert "re-create it with `ktrdr sandbox init`" in result.stderr


def test_config_show_reports_url_flag_over_port_flag() -> None:
    result = CliRunner().invoke(cli, ["-u", "http://127.0.0.1:9", "-p", "8002", "config", "show"])
    assert result.exit_code == 0
    assert "http://127.0.0.1:9" in result.stdout
    assert "flag --url" in result.stdout


def test_config_show_names_the_env_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    register_instance(tmp_path, slot=5)
    nested = tmp_path / "sub"
    nested.mkdir()
    monkeypatch.chdir(nested)
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    body = json.loads(result.stdout)
    assert body["api_url"] == "http://localhost:8005"
    assert body["env_file"] == str((tmp_path / ".env.sandbox").resolve())


def test_server_values_print_literally_not_as_markup(api: tuple[str, StandinApiState]) -> None:
    url, state = api
    state.health["instance_id"] = "[bold]x[/bold]"
    result = CliRunner().invoke(cli, ["-u", url, "health"])
    assert "[bold]x[/bold]" in result.stdout


def test_table_cells_print_literally_not_as_markup(api: tuple[str, StandinApiState]) -> None:
    url, state = api
    state.workers[0]["worker_id"] = "[red]w[/red]"
    result = CliRunner().invoke(cli, ["-u", url, "workers", "list"])
    assert "[red]w[/red]" in result.stdout


START = ["operations", "start", "backtest", "--symbol", "AAPL"]
API_COMMANDS = [
    (["health"], "/health"),
    (["workers", "list"], "/workers"),
    (["operations", "list"], "/operations"),
    (["operations", "show", "X"], "/operations/X"),
    (START, "/operations"),
    ([*START, "--wait"], "/operations"),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
@pytest.mark.parametrize(
    ("command", "path"), API_COMMANDS, ids=[" ".join(c) for c, _ in API_COMMANDS]
)
@pytest.mark.parametrize(
    "body",
    [[1, 2, 3], {}, {"workers": "x"}, {"operations": "y"}, "text", None],
    ids=["list", "empty-object", "workers-object", "operations-object", "string", "null"],
)
def test_unexpected_json_is_one_error_line_not_a_traceback(
    api: tuple[str, StandinApiState], body: object, command: list[str], path: str, as_json: bool
) -> None:
    url, state = api
    state.every_body = body  # some other service answering on the port
    result = CliRunner().invoke(cli, ["-u", url, *command, *(["--json"] if as_json else [])])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1
    assert result.stdout == ""  # with --json too: never a bad body with a good exit code
    assert result.stderr.startswith(f"Error: unexpected response from {url}/api/v1{path}: ")
    assert result.stderr.strip().endswith("is -p/-u pointing at a KTRDR API? (ktrdr config show)")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "body", "got"),
    [
        (
            ["health"],
            [1, 2, 3],
            'with "status", "version", "database" and "instance_id", got a list',
        ),
        (
            ["health"],
            {"status": "ok"},
            'got an object without "version", "database" and "instance_id"',
        ),
        (["workers", "list"], [{"worker_id": "w"}, 3], "got a number at index 1"),
        (["operations", "list"], {"operations": "y"}, "expected a JSON list of objects"),
        (
            ["operations", "show", "X"],
            {"operation_id": 5, "status": "ok"},
            '"operation_id" is a number',
        ),
        (START, {"operation_id": "op", "status": None}, 'whose "status" is null'),
    ],
)
def test_unexpected_json_says_what_was_expected_and_what_came(
    api: tuple[str, StandinApiState], command: list[str], body: object, got: str
) -> None:
    url, state = api
    state.every_body = body
    result = CliRunner().invoke(cli, ["-u", url, *command])
    assert result.exit_code == 1
    assert got in result.stderr


def test_empty_lists_are_valid(api: tuple[str, StandinApiState]) -> None:
    url, state = api
    state.every_body = []
    for command in (["workers", "list"], ["operations", "list", "--json"]):
        result = CliRunner().invoke(cli, ["-u", url, *command])
        assert result.exit_code == 0, result.output

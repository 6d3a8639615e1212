"""`ktrdr sandbox mcp` driven by the SDK's own stdio client: the real `ktrdr` entry point runs
as a subprocess, with this test's KTRDR_HOME and no Docker engine (DOCKER_HOST points nowhere).
Results are compared with the CLI's own `--json` output and error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from ktrdr.cli.sandbox.e2e.run import junit_summary
from ktrdr.cli.sandbox.slots.ports import ports_for_slot
from tests.support.fake_api_server import standin_api_server
from tests.support.mcp_session import create, drive, error_of, ktrdr

ALL_TOOLS = {
    "sandbox_list",
    "sandbox_status",
    "sandbox_create",
    "sandbox_up",
    "sandbox_down",
    "sandbox_pause",
    "sandbox_resume",
    "sandbox_destroy",
    "sandbox_logs",
    "sandbox_test_e2e",
    "sandbox_evidence",
    "api_health",
    "workers_list",
    "operations_start",
    "operations_get",
}


def cli_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("Error: ")


# --- starting -------------------------------------------------------------------------------


def test_without_a_pin_or_all_instances_the_server_refuses_in_one_line(checkout: Path) -> None:
    result = ktrdr("sandbox", "mcp", cwd=checkout)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no instance to pin the MCP server to")
    assert "--all-instances" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_instance_and_all_instances_together_are_a_usage_error(checkout: Path) -> None:
    result = ktrdr("sandbox", "mcp", "--instance", "a", "--all-instances", cwd=checkout)
    assert result.returncode == 2
    assert "not both" in result.stderr


def test_pinning_to_an_unknown_instance_is_refused(checkout: Path) -> None:
    result = ktrdr("sandbox", "mcp", "--instance", "nope", cwd=checkout)
    assert result.returncode == 1
    assert cli_error(result).startswith("no instance named 'nope'")


def test_print_config_inside_an_instance_pins_it_with_this_home(
    checkout: Path, isolated_ktrdr_home: Path
) -> None:
    created = create("feat", checkout)
    result = ktrdr("sandbox", "mcp", "--print-config", cwd=Path(created["path"]))
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    entry = config["mcpServers"][f"ktrdr-{created['instance_id']}"]
    assert Path(entry["command"]).is_absolute()
    assert Path(entry["command"]).name == "ktrdr"
    assert entry["args"] == ["sandbox", "mcp", "--instance", created["instance_id"]]
    assert entry["env"]["KTRDR_HOME"] == str(isolated_ktrdr_home)


def test_the_fast_paths_never_import_mcp() -> None:
    probe = (
        "import sys\nfrom ktrdr.cli.main import cli\n"
        "for args in (['--help'], ['sandbox', 'list']):\n"
        "    try:\n        cli(args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
        "print('MCP=' + str('mcp' in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "MCP=False", result.stdout


# --- schemas --------------------------------------------------------------------------------


def test_an_unpinned_server_offers_every_tool_with_closed_input_and_object_output_schemas(
    checkout: Path,
) -> None:
    listed = drive(["--all-instances"], checkout, lambda c: c.list_tools())
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == ALL_TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
        assert tool.description
    assert "instance" in tools["sandbox_status"].input_schema["required"]
    assert "all" in tools["sandbox_destroy"].input_schema["properties"]
    assert tools["sandbox_create"].input_schema["required"] == ["name"]
    assert tools["sandbox_logs"].input_schema["properties"]["tail"]["type"] == "integer"
    assert tools["sandbox_test_e2e"].input_schema["properties"]["pytest_args"]["type"] == "array"


def test_a_pinned_server_lists_no_create_no_destroy_all_and_no_instance_argument(
    checkout: Path,
) -> None:
    created = create("feat", checkout)
    listed = drive([], Path(created["path"]), lambda c: c.list_tools())
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == ALL_TOOLS - {"sandbox_create"}
    for tool in tools.values():
        properties = tool.input_schema["properties"]
        assert not {"instance", "name", "path", "port", "url", "all"} & set(properties), tool.name
    assert set(tools["sandbox_destroy"].input_schema["properties"]) == {"force"}


# --- results equal the CLI's --json ---------------------------------------------------------


def test_create_list_status_and_evidence_results_equal_the_cli_json(checkout: Path) -> None:
    async def steps(client: ClientSession) -> dict[str, Any]:
        created = await client.call_tool("sandbox_create", {"name": "feat"})
        listed = await client.call_tool("sandbox_list", {})
        status = await client.call_tool("sandbox_status", {"instance": "feat"})
        evidence = await client.call_tool("sandbox_evidence", {"instance": "feat"})
        return {"created": created, "list": listed, "status": status, "evidence": evidence}

    results = drive(["--all-instances"], checkout, steps)
    for name, result in results.items():
        assert not result.is_error, (name, result.content)
        assert json.loads(result.content[0].text) == result.structured_content
    created = results["created"].structured_content
    path = Path(created["path"])
    assert (path / ".env.sandbox").is_file()
    assert created["instance_id"] == "ktrdr--feat"
    cli_list = json.loads(ktrdr("sandbox", "list", "--json", cwd=checkout).stdout)
    assert results["list"].structured_content == {"instances": cli_list}
    cli_status = json.loads(ktrdr("sandbox", "status", "feat", "--json", cwd=checkout).stdout)
    assert results["status"].structured_content == cli_status
    evidence = results["evidence"].structured_content
    assert Path(evidence["path"]).is_file()
    assert "manifest.json" in evidence["files"]
    assert evidence["instance_id"] == "ktrdr--feat"


def test_a_pinned_list_shows_only_its_instance(checkout: Path) -> None:
    first = create("one", checkout)
    create("two", checkout)
    result = drive([], Path(first["path"]), lambda c: c.call_tool("sandbox_list", {}))
    assert [row["instance_id"] for row in result.structured_content["instances"]] == ["ktrdr--one"]


# --- errors: the CLI's line and exit code ----------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "cli_args"),
    [
        ("sandbox_up", {}, ["sandbox", "up", "feat"]),
        (
            "sandbox_logs",
            {"service": "backend"},
            ["sandbox", "logs", "backend", "--instance", "feat"],
        ),
        ("sandbox_test_e2e", {}, ["sandbox", "test-e2e"]),
        ("sandbox_destroy", {}, ["sandbox", "destroy", "feat", "--yes"]),
        ("sandbox_down", {}, ["sandbox", "down", "feat"]),
        ("sandbox_pause", {}, ["sandbox", "pause", "feat"]),
        ("sandbox_resume", {}, ["sandbox", "resume", "feat"]),
    ],
)
def test_without_an_engine_a_call_fails_with_the_cli_line_and_exit_code(
    checkout: Path, tool: str, arguments: dict[str, Any], cli_args: list[str]
) -> None:
    created = create("feat", checkout)
    root = Path(created["path"])
    result = drive([], root, lambda c: c.call_tool(tool, arguments))
    message, code = error_of(result)
    cli = ktrdr(*cli_args, cwd=root)
    assert (message, code) == (cli_error(cli), cli.returncode)
    assert (root / ".env.sandbox").is_file()  # a refused destroy changed nothing


def test_a_bad_argument_is_a_usage_error_naming_it(checkout: Path) -> None:
    created = create("feat", checkout)

    async def steps(client: ClientSession) -> list[Any]:
        return [
            await client.call_tool("sandbox_logs", {"tail": "many"}),
            await client.call_tool("sandbox_logs", {"tail": -1}),
            await client.call_tool("sandbox_test_e2e", {"pytest_args": "-k x"}),
            await client.call_tool("operations_start", {"operation_type": "x", "symbol": "A"}),
            await client.call_tool("operations_get", {}),
        ]

    results = drive([], Path(created["path"]), steps)
    errors = [error_of(result) for result in results]
    assert all(code == 2 for _, code in errors)
    assert "'tail' must be an integer" in errors[0][0]
    assert "'tail' must be at least 0" in errors[1][0]
    assert "'pytest_args' must be a list of strings" in errors[2][0]
    assert "'operation_type' must be one of backtest, training" in errors[3][0]
    assert "'operation_id' is required" in errors[4][0]


def test_an_unpinned_server_needs_the_instance_argument_or_all(checkout: Path) -> None:
    create("feat", checkout)

    async def steps(client: ClientSession) -> list[Any]:
        return [
            await client.call_tool("sandbox_destroy", {}),
            await client.call_tool("sandbox_destroy", {"instance": "feat", "all": True}),
            await client.call_tool("sandbox_status", {}),
        ]

    errors = [error_of(result) for result in drive(["--all-instances"], checkout, steps)]
    assert errors[0] == ("pass the instance argument: this server serves all instances", 2)
    assert errors[1] == ("pass instance or all, not both", 2)
    assert errors[2] == ("sandbox_status: argument 'instance' is required", 2)


# --- the pin ----------------------------------------------------------------------------------


ESCAPES = [
    ("sandbox_status", {"instance": "ktrdr--other"}),
    ("sandbox_status", {"name": "other"}),
    ("sandbox_evidence", {"path": "OTHER_PATH"}),
    ("sandbox_logs", {"instance": "../ktrdr--other"}),
    ("sandbox_pause", {"instance": "other"}),
    ("sandbox_destroy", {"instance": "other"}),
    ("sandbox_destroy", {"all": True}),
    ("api_health", {"port": "OTHER_PORT"}),
    ("operations_get", {"operation_id": "op-1", "url": "http://localhost:OTHER_PORT"}),
    ("sandbox_create", {"name": "third"}),
]


def test_a_pinned_server_refuses_every_escape_and_the_other_instance_is_untouched(
    checkout: Path,
) -> None:
    pinned = create("feat", checkout)
    other = create("other", checkout)
    other_port = str(other["ports"]["api"])

    async def steps(client: ClientSession) -> list[Any]:
        results = []
        for tool, arguments in ESCAPES:
            filled = {
                key: value.replace("OTHER_PATH", other["path"]).replace("OTHER_PORT", other_port)
                if isinstance(value, str)
                else value
                for key, value in arguments.items()
            }
            results.append(await client.call_tool(tool, filled))
        return results

    results = drive([], Path(pinned["path"]), steps)
    for (tool, arguments), result in zip(ESCAPES, results, strict=True):
        message, code = error_of(result)
        assert code == 2, (tool, message)
        assert "pinned to instance ktrdr--feat" in message, (tool, arguments, message)
    assert (Path(other["path"]) / ".env.sandbox").is_file()
    cli_list = json.loads(ktrdr("sandbox", "list", "--json", cwd=checkout).stdout)
    assert {row["instance_id"] for row in cli_list} == {"ktrdr--feat", "ktrdr--other"}


def test_a_pinned_server_started_by_name_from_elsewhere_acts_on_that_instance(
    checkout: Path,
) -> None:
    create("feat", checkout)
    result = drive(["--instance", "feat"], checkout, lambda c: c.call_tool("sandbox_status", {}))
    assert not result.is_error
    assert result.structured_content["instance_id"] == "ktrdr--feat"


def test_a_pinned_server_reads_only_its_own_resources(checkout: Path) -> None:
    pinned = create("feat", checkout)
    other = create("other", checkout)
    report = {"instance_id": "ktrdr--feat", "result": "passed", "checks": []}
    (Path(pinned["path"]) / ".sandbox").mkdir()
    (Path(pinned["path"]) / ".sandbox" / "gate-report.json").write_text(json.dumps(report))
    (Path(other["path"]) / ".sandbox").mkdir()
    (Path(other["path"]) / ".sandbox" / "gate-report.json").write_text("{}")

    async def steps(client: ClientSession) -> tuple[Any, Any, str]:
        listed = await client.list_resources()
        own = await client.read_resource("ktrdr://instance/ktrdr--feat/gate-report")
        try:
            await client.read_resource("ktrdr://instance/ktrdr--other/gate-report")
        except Exception as e:  # the SDK raises the server's error
            refused = str(e)
        else:
            refused = ""
        return listed, own, refused

    listed, own, refused = drive([], Path(pinned["path"]), steps)
    uris = {str(resource.uri) for resource in listed.resources}
    assert "ktrdr://instance/ktrdr--feat/gate-report" in uris
    assert "ktrdr://instance/ktrdr--feat/logs/backend" in uris
    assert not any("ktrdr--other" in uri for uri in uris)
    assert not any(uri.endswith("/logs/e2e-tests") for uri in uris)
    assert json.loads(own.contents[0].text) == report
    assert "pinned to instance ktrdr--feat" in refused


def test_tools_of_a_pinned_server_fail_clearly_once_its_instance_is_gone(checkout: Path) -> None:
    created = create("feat", checkout)
    root = Path(created["path"])

    async def steps(client: ClientSession) -> Any:
        (root / ".env.sandbox").unlink()  # as a destroy from a shell would leave it
        return await client.call_tool("sandbox_status", {})

    message, code = error_of(drive([], root, steps))
    assert "pinned instance ktrdr--feat is gone" in message
    assert code == 1


# --- API tools on the pinned instance's port --------------------------------------------------


def test_api_tools_talk_to_the_pinned_slot_port_with_progress_and_cli_json(checkout: Path) -> None:
    created = create("feat", checkout)
    root = Path(created["path"])
    port = ports_for_slot(created["slot"]).api
    with standin_api_server(port) as (_url, api):
        api.polls_until_complete = 2
        progress: list[str] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")

        async def steps(client: ClientSession) -> list[Any]:
            return [
                await client.call_tool("api_health", {}),
                await client.call_tool("workers_list", {}),
                await client.call_tool(
                    "operations_start",
                    {"operation_type": "backtest", "symbol": "AAPL", "wait": True},
                    progress_callback=on_progress,
                ),
                await client.call_tool("operations_get", {"operation_id": "op-1"}),
            ]

        health, workers, started, got = drive([], root, steps)
        cli_health = json.loads(ktrdr("health", "--json", cwd=root).stdout)
        cli_workers = json.loads(ktrdr("workers", "list", "--json", cwd=root).stdout)
        cli_op = json.loads(ktrdr("operations", "show", "op-1", "--json", cwd=root).stdout)
    assert health.structured_content == cli_health
    assert workers.structured_content == {"workers": cli_workers}
    assert got.structured_content == cli_op
    assert started.structured_content["status"] == "completed"
    assert api.posted == [
        {"operation_type": "backtest", "params": {"symbol": "AAPL", "timeframe": "1d"}}
    ]
    assert progress
    assert all(line.startswith("operation op-2: running") for line in progress)


def test_a_failed_operation_is_a_tool_error_carrying_the_operation(checkout: Path) -> None:
    created = create("feat", checkout)
    with standin_api_server(ports_for_slot(created["slot"]).api) as (_url, api):
        api.fails_with = "no data for ZZZ"
        result = drive(
            [],
            Path(created["path"]),
            lambda c: c.call_tool(
                "operations_start", {"operation_type": "backtest", "symbol": "ZZZ", "wait": True}
            ),
        )
    message, code = error_of(result)
    assert message.startswith("operation op-2 failed: no data for ZZZ")
    assert code == 1
    assert result.structured_content["result"]["status"] == "failed"


@pytest.mark.timing
def test_a_cancelled_call_is_interrupted_and_the_server_keeps_serving(checkout: Path) -> None:
    created = create("feat", checkout)
    with standin_api_server(ports_for_slot(created["slot"]).api) as (_url, api):
        api.polls_until_complete = 10_000  # never completes on its own

        async def steps(client: ClientSession) -> tuple[int, int, Any]:
            call = anyio.CancelScope()

            async def start_and_wait() -> None:
                with call:
                    await client.call_tool(
                        "operations_start",
                        {"operation_type": "backtest", "symbol": "AAPL", "wait": True},
                    )

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(start_and_wait)
                # Cancelled once it polls (an event), not after a fixed time: on a loaded
                # machine the first poll may come later than any such time.
                with anyio.fail_after(60):
                    while api.gets == 0:
                        await anyio.sleep(0.05)
                call.cancel()
            await anyio.sleep(1.5)  # the interrupted poll loop has stopped by now
            polls = api.gets
            await anyio.sleep(1.5)
            after = await client.call_tool("operations_get", {"operation_id": "op-2"})
            return polls, api.gets, after

        polls, later, after = drive([], Path(created["path"]), steps)
    assert polls > 0
    assert later == polls + 1  # only operations_get's request: no poll after the cancel
    assert after.structured_content["status"] == "running"


# --- JUnit summary ----------------------------------------------------------------------------


def test_junit_summary_counts_outcomes_and_names_the_failing_tests(tmp_path: Path) -> None:
    junit = tmp_path / "e2e-junit.xml"
    junit.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="4">'
        '<testcase classname="tests.e2e.test_instance" name="test_health"/>'
        '<testcase classname="tests.e2e.test_instance" name="test_backtest">'
        '<failure message="assert 8 == 9">trace</failure></testcase>'
        '<testcase classname="tests.e2e.test_instance" name="test_setup">'
        '<error message="fixture broke"/></testcase>'
        '<testcase classname="tests.e2e.test_instance" name="test_trace">'
        '<skipped message="stand-in"/></testcase>'
        "</testsuite></testsuites>"
    )
    summary = junit_summary(junit)
    assert {k: summary[k] for k in ("tests", "passed_tests", "failures", "errors", "skipped")} == {
        "tests": 4,
        "passed_tests": 1,
        "failures": 1,
        "errors": 1,
        "skipped": 1,
    }
    assert summary["failing"] == [
        {
            "test": "tests.e2e.test_instance::test_backtest",
            "outcome": "failure",
            "message": "assert 8 == 9",
        },
        {
            "test": "tests.e2e.test_instance::test_setup",
            "outcome": "error",
            "message": "fixture broke",
        },
    ]
    missing = junit_summary(tmp_path / "absent.xml")
    assert missing["tests"] == 0
    assert str(missing["junit"]).startswith("missing")

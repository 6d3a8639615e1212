"""The tools of `ktrdr sandbox mcp`: each one calls the same core function as its CLI command
and returns that command's `--json` output (a JSON list is wrapped in an object, e.g.
`{"instances": [...]}`, because MCP structured results are objects).

A call fails exactly when the CLI command would exit non-zero, with the same one-line message
and exit code. This module knows nothing of the MCP SDK (mcp/server.py adapts it), so the
tools, their schemas and the pin are testable without it.
"""

from __future__ import annotations

from typing import Any

from ktrdr.cli.limits import MAX_TEXT, shown
from ktrdr.cli.sandbox.e2e.args import MAX_PYTEST_ARG, MAX_PYTEST_ARGS
from ktrdr.cli.sandbox.mcp import handlers as handle
from ktrdr.cli.sandbox.mcp.args import choice, flag, integer, number, text, text_list
from ktrdr.cli.sandbox.mcp.scope import Scope
from ktrdr.cli.sandbox.mcp.spec import Outcome, Progress, ToolSpec, check_arguments
from ktrdr.cli.sandbox.slots.ports import FIRST_SANDBOX_SLOT, LAST_SLOT
from ktrdr.errors import ExitCode, KtrdrError

MAX_WAIT_S = 86_400  # a day: any longer wait is a mistake
MAX_TAIL = 100_000  # log lines per service


def tools_for(scope: Scope) -> list[ToolSpec]:
    """What this server offers: a pinned server does not list create or `destroy --all`."""
    return [tool for tool in TOOLS if tool.pinned_ok or not scope.pinned]


def find_tool(scope: Scope, name: str) -> ToolSpec:
    for tool in tools_for(scope):
        if tool.name == name:
            return tool
    if any(tool.name == name for tool in TOOLS):
        raise KtrdrError(
            f"{name} is not offered by this server: it is pinned to {scope.describe()}; "
            "run it from a shell, or from a server started with --all-instances",
            exit_code=ExitCode.USAGE,
        )
    raise KtrdrError(f"no tool {shown(name)}", exit_code=ExitCode.USAGE)


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "sandbox_list",
        "Registered instances with slot, status, API port and path (= `ktrdr sandbox list "
        "--json`); a pinned server lists only its instance.",
        handle.on_list,
        on_instance=False,
        result_keys=("instances",),
    ),
    ToolSpec(
        "sandbox_status",
        "Slot, ports, URLs, containers, API, workers and last gate of the instance "
        "(= `ktrdr sandbox status --json`).",
        handle.on_status,
        result_keys=("instance_id", "status", "slot", "ports", "urls"),
    ),
    ToolSpec(
        "sandbox_create",
        "Add a worktree ../<repo>--NAME on a new branch NAME with its own slot, from the "
        "server's checkout (= `ktrdr sandbox create NAME --json`).",
        handle.on_create,
        properties={
            "name": text(
                "Name of the instance and of its new branch (its limit, 56 characters in a "
                "checkout named ktrdr, is checked by create).",
                max_length=MAX_TEXT,
            ),
            "slot": integer(
                "Slot (default: the lowest free one of KTRDR_SLOTS).",
                minimum=FIRST_SANDBOX_SLOT,
                maximum=LAST_SLOT,
            ),
            "branch": text("Check out this existing branch instead of creating NAME."),
            "base": text("Start the new branch from this ref (default HEAD)."),
        },
        required=("name",),
        on_instance=False,
        pinned_ok=False,
        result_keys=("instance_id", "slot", "path", "ports"),
    ),
    ToolSpec(
        "sandbox_up",
        "Start the instance and run the Startability Gate; a progress notification per gate "
        "check as it completes. Result: the gate report (= `ktrdr sandbox up --json`).",
        handle.on_up,
        properties={
            "timeout": number(
                "Seconds the gate waits.", minimum=1, maximum=MAX_WAIT_S, default=300
            ),
            "build": flag("Rebuild the app image first."),
            "gate": flag("Run the Startability Gate (false = just start).", default=True),
        },
        result_keys=("instance_id", "result"),
    ),
    ToolSpec(
        "sandbox_pause",
        "Freeze the instance's containers: no CPU, memory and state kept, ports stay its own "
        "(= `ktrdr sandbox pause --json`).",
        handle.on_pause,
        result_keys=("instance_id", "paused"),
    ),
    ToolSpec(
        "sandbox_resume",
        "Thaw a paused instance and re-run the Startability Gate; a progress notification per "
        "check. Result: the gate report (= `ktrdr sandbox resume --json`).",
        handle.on_resume,
        properties={
            "timeout": number(
                "Seconds the gate waits.", minimum=1, maximum=MAX_WAIT_S, default=120
            ),
        },
        result_keys=("instance_id", "result"),
    ),
    ToolSpec(
        "sandbox_down",
        "Stop the instance's containers; volumes (its data) are kept (= `ktrdr sandbox down`).",
        handle.on_down,
        result_keys=("instance_id", "result"),
    ),
    ToolSpec(
        "sandbox_destroy",
        "Remove the instance: containers, volumes, worktree (branch kept), registry entry "
        "(= `ktrdr sandbox destroy --yes --json`).",
        handle.on_destroy,
        properties={"force": flag("Discard uncommitted/untracked worktree changes.")},
        instance_required=False,
        unpinned_properties={"all": flag("Destroy every registered instance.")},
        result_keys=("destroyed",),
    ),
    ToolSpec(
        "sandbox_logs",
        "The last lines of every service's log, or of one service (= `ktrdr sandbox logs`).",
        handle.on_logs,
        properties={
            "service": text("A service, e.g. backend, db, backtest-worker-1 (default: all)."),
            "tail": integer("Lines per service.", minimum=0, maximum=MAX_TAIL, default=100),
        },
        result_keys=("instance_id", "text"),
    ),
    ToolSpec(
        "sandbox_test_e2e",
        "Run the E2E suite inside the instance's compose network (= `make test-e2e`); each "
        "output line is a progress notification. Result: exit code, counts and failing tests "
        "from the JUnit XML.",
        handle.on_test_e2e,
        properties={
            "pytest_args": text_list(
                'Extra pytest arguments, e.g. ["-k", "health"]: selection and reporting '
                "options and node ids under tests/e2e (docs/sandbox.md lists them).",
                max_items=MAX_PYTEST_ARGS,
                max_length=MAX_PYTEST_ARG,
            )
        },
        result_keys=("instance_id", "passed", "reason", "returncode", "tests", "failing"),
    ),
    ToolSpec(
        "sandbox_evidence",
        "Bundle gate report, logs, test results and git state into a tar.gz under "
        "$KTRDR_HOME/evidence; returns its path (= `ktrdr sandbox evidence --json`).",
        handle.on_evidence,
        result_keys=("instance_id", "path", "files"),
    ),
    ToolSpec(
        "api_health",
        "The instance's API health: status, version, database, instance id (= `ktrdr health "
        "--json` on the instance's port).",
        handle.on_health,
        result_keys=("status", "instance_id"),
    ),
    ToolSpec(
        "workers_list",
        "Workers registered with the instance's backend (= `ktrdr workers list --json`).",
        handle.on_workers,
        result_keys=("workers",),
    ),
    ToolSpec(
        "operations_start",
        "Submit a backtest or training operation; with wait, poll until it completes "
        "(= `ktrdr operations start … --json`).",
        handle.on_operations_start,
        properties={
            "operation_type": choice("What to run.", ["backtest", "training"]),
            "symbol": text("Symbol whose OHLCV data to use, e.g. AAPL."),
            "timeframe": text("Bar size, e.g. 1d or 1h.", default="1d"),
            "strategy": text("Strategy config name from the shared data."),
            "wait": flag("Wait until the operation completes or fails."),
            "timeout": number(
                "Seconds to wait with wait.", minimum=0, maximum=MAX_WAIT_S, default=300.0
            ),
        },
        required=("operation_type", "symbol"),
        result_keys=("operation_id", "status"),
    ),
    ToolSpec(
        "operations_get",
        "One operation with its parameters and result (= `ktrdr operations show ID --json`).",
        handle.on_operations_get,
        properties={"operation_id": text("The operation id, e.g. op_589ba46034f44017.")},
        required=("operation_id",),
        result_keys=("operation_id", "status"),
    ),
)


def run_tool(scope: Scope, name: str, arguments: dict[str, Any], progress: Progress) -> Outcome:
    """Look up, check and run one tool call. Expected failures raise KtrdrError."""
    tool = find_tool(scope, name)
    checked = check_arguments(tool, scope, arguments)
    return tool.run(scope, checked, progress)

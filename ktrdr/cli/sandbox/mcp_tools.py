"""The tools of `ktrdr sandbox mcp`: each one calls the same core function as its CLI command
and returns that command's `--json` output (a JSON list is wrapped in an object, e.g.
`{"instances": [...]}`, because MCP structured results are objects).

A call fails exactly when the CLI command would exit non-zero, with the same one-line message
and exit code. This module knows nothing of the MCP SDK (mcp_server.py adapts it), so the
tools, their schemas and the pin are testable without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ktrdr.cli.sandbox.mcp_scope import Scope
from ktrdr.errors import ExitCode, KtrdrError

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.gate_checks import CheckResult

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """A tool's JSON result; `error` set when the command would have exited non-zero after
    printing it (failed gate, failed tests, failed operation)."""

    data: dict[str, Any]
    error: KtrdrError | None = None


Handler = Callable[[Scope, dict[str, Any], Progress], Outcome]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    run: Handler
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    on_instance: bool = True  # unpinned servers take an `instance` argument
    instance_required: bool = True
    unpinned_properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    pinned_ok: bool = True  # offered (listed) on a pinned server
    result_keys: tuple[str, ...] = ()

    def input_schema(self, scope: Scope) -> dict[str, Any]:
        properties = dict(self.properties)
        required = list(self.required)
        if not scope.pinned:
            properties.update(self.unpinned_properties)
            if self.on_instance:
                properties["instance"] = {
                    "type": "string",
                    "description": "Instance name or id (as in `ktrdr sandbox list`).",
                }
                if self.instance_required:
                    required.append("instance")
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def output_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {key: {} for key in self.result_keys},
            "required": list(self.result_keys),
        }


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
    raise KtrdrError(f"no tool {name!r}", exit_code=ExitCode.USAGE)


def check_arguments(tool: ToolSpec, scope: Scope, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments with defaults filled in, or a usage error naming the bad one. An
    argument the schema does not have is refused, never ignored: on a pinned server that is
    how an `instance`, `path` or `port` argument is turned away."""
    schema = tool.input_schema(scope)
    properties: dict[str, dict[str, Any]] = schema["properties"]
    for key in arguments:
        if key not in properties:
            raise KtrdrError(_unknown_argument(tool, scope, key), exit_code=ExitCode.USAGE)
    for key in schema["required"]:
        if arguments.get(key) is None:
            raise KtrdrError(f"{tool.name}: argument {key!r} is required", exit_code=ExitCode.USAGE)
    checked: dict[str, Any] = {}
    for key, spec in properties.items():
        value = arguments.get(key, spec.get("default"))
        if value is not None:
            problem = _type_problem(value, spec)
            if problem:
                raise KtrdrError(
                    f"{tool.name}: argument {key!r} {problem}", exit_code=ExitCode.USAGE
                )
        checked[key] = value
    return checked


def _unknown_argument(tool: ToolSpec, scope: Scope, key: str) -> str:
    if scope.pinned:
        return (
            f"{tool.name} takes no argument {key!r}: this server is pinned to "
            f"{scope.describe()} and acts only on it; for another instance start "
            "`ktrdr sandbox mcp --instance NAME`"
        )
    accepted = ", ".join(tool.input_schema(scope)["properties"]) or "none"
    return f"{tool.name} takes no argument {key!r} (it takes: {accepted})"


def _type_problem(value: Any, spec: dict[str, Any]) -> str | None:
    kind = spec.get("type")
    if kind == "string" and not isinstance(value, str):
        return "must be a string"
    if kind == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if kind in ("integer", "number"):
        numeric = int if kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return f"must be {'an integer' if kind == 'integer' else 'a number'}"
        if "minimum" in spec and value < spec["minimum"]:
            return f"must be at least {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return f"must be at most {spec['maximum']}"
    if kind == "array" and not (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    ):
        return "must be a list of strings"
    if "enum" in spec and value not in spec["enum"]:
        return f"must be one of {', '.join(map(str, spec['enum']))}"
    return None


# --- the tools ------------------------------------------------------------------------------


def _list(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox.listing import list_instances

    rows = [row.to_json() for row in list_instances()]
    if scope.pinned:
        rows = [row for row in rows if row.get("instance_id") == scope.pinned_id]
    return Outcome({"instances": rows})


def _status(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox.instances import instance_status

    instance = scope.target(args.get("instance"))
    return Outcome(instance_status(instance.instance_id, cwd=instance.root).to_json())


def _create(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox.instances import create_instance

    result = create_instance(
        name=args["name"],
        cwd=scope.cwd,
        slot=args.get("slot"),
        branch=args.get("branch"),
        base=args.get("base"),
        images=os.environ.get("KTRDR_IMAGES"),
    )
    return Outcome(result.to_json())


def _gate_progress(progress: Progress) -> Callable[[list[CheckResult]], None]:
    """One progress notification per gate check, as it completes."""
    reported: set[str] = set()

    def checks_done(checks: list[CheckResult]) -> None:
        for check in checks:
            if check.status != "pending" and check.key not in reported:
                reported.add(check.key)
                mark = "✓" if check.status == "passed" else "✗"
                took = f" ({check.duration_s:.1f}s)" if check.duration_s is not None else ""
                progress(f"{mark} {check.title}: {check.detail}{took}")

    return checks_done


def _up(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox import lifecycle

    instance = scope.target(args.get("instance"))
    progress(f"Starting instance: {instance.instance_id} (slot {instance.slot})")
    result = lifecycle.up(
        instance,
        timeout=args["timeout"],
        build=args["build"],
        gate=args["gate"],
        notify=progress,
        on_update=_gate_progress(progress),
    )
    return Outcome(result.to_json(), result.failure())


def _pause(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox import lifecycle

    instance = scope.target(args.get("instance"))
    frozen = lifecycle.pause(instance, notify=progress)
    return Outcome({"instance_id": instance.instance_id, "paused": frozen})


def _resume(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox import lifecycle

    instance = scope.target(args.get("instance"))
    result = lifecycle.resume(
        instance, timeout=args["timeout"], notify=progress, on_update=_gate_progress(progress)
    )
    return Outcome(result.to_json(), result.failure())


def _down(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox import lifecycle

    instance = scope.target(args.get("instance"))
    lifecycle.down(instance, notify=progress)
    return Outcome({"instance_id": instance.instance_id, "result": "stopped", "volumes_kept": True})


def _destroy(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox import registry
    from ktrdr.cli.sandbox.instances import destroy_many
    from ktrdr.cli.sandbox.locate import Instance, from_entry

    everything = bool(args.get("all"))
    if everything and args.get("instance"):
        raise KtrdrError("pass instance or all, not both", exit_code=ExitCode.USAGE)
    if everything:
        targets = [from_entry(entry) for entry in registry.load().values()]
    else:
        instance = scope.target(args.get("instance"))
        instance.require_entry()
        targets = [instance]

    def starting(instance: Instance) -> None:
        progress(f"{instance.instance_id}: removing containers, volumes and files…")

    batch = destroy_many(
        targets, force=args["force"], keep_going=everything, on_start=starting, on_wait=progress
    )
    return Outcome({"destroyed": batch.to_json()}, batch.failure())


def _logs(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox import lifecycle

    instance = scope.target(args.get("instance"))
    return Outcome(
        lifecycle.log_text(instance, service=args.get("service"), tail=args["tail"]).to_json()
    )


def _test_e2e(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox.e2e import run_e2e

    instance = scope.target(args.get("instance"))
    result = run_e2e(start=instance.root, pytest_args=args["pytest_args"], on_line=progress)
    data: dict[str, Any] = result.to_json()
    if result.returncode == 0:
        return Outcome(data)
    failing = ", ".join(f["test"] for f in data["failing"]) or "see the JUnit XML"
    error = KtrdrError(
        f"E2E FAILED (exit {result.returncode}) for {result.instance_id}: {failing}; "
        f"results: {result.junit_path}",
        exit_code=result.returncode,  # the suite's own code, as `test-e2e` exits with it
    )
    return Outcome(data, error)


def _evidence(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli.sandbox.evidence import collect_evidence

    instance = scope.target(args.get("instance"))
    return Outcome(collect_evidence(start=instance.root).to_json())


def _client(scope: Scope, args: dict[str, Any]) -> Any:
    """The API client of the instance in scope: its slot's port, never one from an argument."""
    from ktrdr.cli.api_client import ApiClient
    from ktrdr.cli.target import url_for_port

    return ApiClient(url_for_port(scope.target(args.get("instance")).ports.api))


def _health(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    client = _client(scope, args)
    body: dict[str, Any] = client.health()
    if body.get("status") == "ok":
        return Outcome(body)
    return Outcome(body, KtrdrError(f"the API at {client.base_url} reports {body.get('status')}"))


def _workers(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    return Outcome({"workers": _client(scope, args).workers()})


def _operations_start(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    from ktrdr.cli import operations

    def waiting(operation: dict[str, Any]) -> None:
        progress(f"operation {operation.get('operation_id')}: {operation.get('status')}")

    operation = operations.start_operation(
        _client(scope, args),
        args["operation_type"],
        symbol=args["symbol"],
        timeframe=args["timeframe"],
        strategy=args.get("strategy"),
        wait=args["wait"],
        timeout=args["timeout"],
        on_wait=waiting,
    )
    return Outcome(operation, operations.failure(operation))


def _operations_get(scope: Scope, args: dict[str, Any], progress: Progress) -> Outcome:
    return Outcome(_client(scope, args).operation(args["operation_id"]))


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _flag(description: str, default: bool = False) -> dict[str, Any]:
    return {"type": "boolean", "default": default, "description": description}


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "sandbox_list",
        "Registered instances with slot, status, API port and path (= `ktrdr sandbox list "
        "--json`); a pinned server lists only its instance.",
        _list,
        on_instance=False,
        result_keys=("instances",),
    ),
    ToolSpec(
        "sandbox_status",
        "Slot, ports, URLs, containers, API, workers and last gate of the instance "
        "(= `ktrdr sandbox status --json`).",
        _status,
        result_keys=("instance_id", "status", "slot", "ports", "urls"),
    ),
    ToolSpec(
        "sandbox_create",
        "Add a worktree ../<repo>--NAME on a new branch NAME with its own slot, from the "
        "server's checkout (= `ktrdr sandbox create NAME --json`).",
        _create,
        properties={
            "name": _string("Name of the instance and of its new branch."),
            "slot": {"type": "integer", "minimum": 1, "maximum": 10, "description": "Slot."},
            "branch": _string("Check out this existing branch instead of creating NAME."),
            "base": _string("Start the new branch from this ref (default HEAD)."),
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
        _up,
        properties={
            "timeout": {
                "type": "number",
                "minimum": 1,
                "default": 300,
                "description": "Seconds the gate waits.",
            },
            "build": _flag("Rebuild the app image first."),
            "gate": _flag("Run the Startability Gate (false = just start).", default=True),
        },
        result_keys=("instance_id", "result"),
    ),
    ToolSpec(
        "sandbox_pause",
        "Freeze the instance's containers: no CPU, memory and state kept, ports stay its own "
        "(= `ktrdr sandbox pause --json`).",
        _pause,
        result_keys=("instance_id", "paused"),
    ),
    ToolSpec(
        "sandbox_resume",
        "Thaw a paused instance and re-run the Startability Gate; a progress notification per "
        "check. Result: the gate report (= `ktrdr sandbox resume --json`).",
        _resume,
        properties={
            "timeout": {
                "type": "number",
                "minimum": 1,
                "default": 120,
                "description": "Seconds the gate waits.",
            },
        },
        result_keys=("instance_id", "result"),
    ),
    ToolSpec(
        "sandbox_down",
        "Stop the instance's containers; volumes (its data) are kept (= `ktrdr sandbox down`).",
        _down,
        result_keys=("instance_id", "result"),
    ),
    ToolSpec(
        "sandbox_destroy",
        "Remove the instance: containers, volumes, worktree (branch kept), registry entry "
        "(= `ktrdr sandbox destroy --yes --json`).",
        _destroy,
        properties={"force": _flag("Discard uncommitted/untracked worktree changes.")},
        instance_required=False,
        unpinned_properties={"all": _flag("Destroy every registered instance.")},
        result_keys=("destroyed",),
    ),
    ToolSpec(
        "sandbox_logs",
        "The last lines of every service's log, or of one service (= `ktrdr sandbox logs`).",
        _logs,
        properties={
            "service": _string("A service, e.g. backend, db, backtest-worker-1 (default: all)."),
            "tail": {"type": "integer", "minimum": 0, "default": 100, "description": "Lines."},
        },
        result_keys=("instance_id", "text"),
    ),
    ToolSpec(
        "sandbox_test_e2e",
        "Run the E2E suite inside the instance's compose network (= `make test-e2e`); each "
        "output line is a progress notification. Result: exit code, counts and failing tests "
        "from the JUnit XML.",
        _test_e2e,
        properties={
            "pytest_args": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": 'Extra pytest arguments, e.g. ["-k", "health"].',
            }
        },
        result_keys=("instance_id", "passed", "returncode", "tests", "failing"),
    ),
    ToolSpec(
        "sandbox_evidence",
        "Bundle gate report, logs, test results and git state into a tar.gz under "
        "$KTRDR_HOME/evidence; returns its path (= `ktrdr sandbox evidence --json`).",
        _evidence,
        result_keys=("instance_id", "path", "files"),
    ),
    ToolSpec(
        "api_health",
        "The instance's API health: status, version, database, instance id (= `ktrdr health "
        "--json` on the instance's port).",
        _health,
        result_keys=("status", "instance_id"),
    ),
    ToolSpec(
        "workers_list",
        "Workers registered with the instance's backend (= `ktrdr workers list --json`).",
        _workers,
        result_keys=("workers",),
    ),
    ToolSpec(
        "operations_start",
        "Submit a backtest or training operation; with wait, poll until it completes "
        "(= `ktrdr operations start … --json`).",
        _operations_start,
        properties={
            "operation_type": {"type": "string", "enum": ["backtest", "training"]},
            "symbol": _string("Symbol whose OHLCV data to use, e.g. AAPL."),
            "timeframe": {"type": "string", "default": "1d"},
            "strategy": _string("Strategy config name from the shared data."),
            "wait": _flag("Wait until the operation completes or fails."),
            "timeout": {"type": "number", "minimum": 0, "default": 300.0},
        },
        required=("operation_type", "symbol"),
        result_keys=("operation_id", "status"),
    ),
    ToolSpec(
        "operations_get",
        "One operation with its parameters and result (= `ktrdr operations show ID --json`).",
        _operations_get,
        properties={"operation_id": _string("The operation id, e.g. op_589ba46034f44017.")},
        required=("operation_id",),
        result_keys=("operation_id", "status"),
    ),
)


def run_tool(scope: Scope, name: str, arguments: dict[str, Any], progress: Progress) -> Outcome:
    """Look up, check and run one tool call. Expected failures raise KtrdrError."""
    tool = find_tool(scope, name)
    checked = check_arguments(tool, scope, arguments)
    return tool.run(scope, checked, progress)

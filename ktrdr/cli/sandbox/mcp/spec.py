"""What an MCP tool is: its spec (name, schema, handler), its outcome, and the checking of a
call's arguments against the schema. Knows nothing of the SDK or of the tools themselves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ktrdr.cli.limits import shown
from ktrdr.cli.sandbox.mcp.args import text, value_problem
from ktrdr.cli.sandbox.mcp.scope import Scope
from ktrdr.errors import ExitCode, KtrdrError

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
                properties["instance"] = text("Instance name or id (as in `ktrdr sandbox list`).")
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


def check_arguments(tool: ToolSpec, scope: Scope, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments with defaults filled in, or a usage error naming the bad one (the rules
    are in mcp/args.py). An argument the schema does not have is refused, never ignored: on a
    pinned server that is how an `instance`, `path` or `port` argument is turned away. `null`
    is the default, never "off"; a required argument cannot be null."""
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
        value = arguments.get(key)
        if value is None:
            value = spec.get("default")
        else:
            problem = value_problem(value, spec)
            if problem:
                raise KtrdrError(
                    f"{tool.name}: argument {key!r} {problem}", exit_code=ExitCode.USAGE
                )
        checked[key] = value
    return checked


def _unknown_argument(tool: ToolSpec, scope: Scope, key: str) -> str:
    if scope.pinned:
        return (
            f"{tool.name} takes no argument {shown(key)}: this server is pinned to "
            f"{scope.describe()} and acts only on it; for another instance start "
            "`ktrdr sandbox mcp --instance NAME`"
        )
    accepted = ", ".join(tool.input_schema(scope)["properties"]) or "none"
    return f"{tool.name} takes no argument {shown(key)} (it takes: {accepted})"

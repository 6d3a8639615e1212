"""The MCP tools' arguments checked against their declared schemas (mcp/args.py): the checks
an agent meets before any tool runs, called directly on the real tool table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox.mcp.scope import Scope
from ktrdr.cli.sandbox.mcp.spec import check_arguments
from ktrdr.cli.sandbox.mcp.tools import TOOLS, find_tool
from ktrdr.errors import ExitCode, KtrdrError

PINNED = Scope(cwd=Path("/nowhere"), pinned_id="ktrdr--feat", pinned_root=Path("/nowhere"))
UNPINNED = Scope(cwd=Path("/nowhere"))


def checked(tool: str, arguments: dict[str, Any], scope: Scope = PINNED) -> dict[str, Any]:
    return check_arguments(find_tool(scope, tool), scope, arguments)


def refusal(tool: str, arguments: dict[str, Any], scope: Scope = PINNED) -> str:
    with pytest.raises(KtrdrError) as caught:
        checked(tool, arguments, scope)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\n" not in caught.value.message
    assert len(caught.value.message) < 400, "a refused value is quoted short"
    return caught.value.message


# --- null is the default ----------------------------------------------------------------------


def test_null_means_the_documented_default_never_off() -> None:
    up = checked("sandbox_up", {"timeout": None, "gate": None, "build": None})
    assert up == {"timeout": 300, "gate": True, "build": False}
    assert checked("sandbox_resume", {"timeout": None}) == {"timeout": 120}
    assert checked("sandbox_logs", {"tail": None, "service": None}) == {
        "service": None,  # no default: every service
        "tail": 100,
    }
    assert checked("sandbox_test_e2e", {"pytest_args": None}) == {"pytest_args": []}
    started = checked(
        "operations_start",
        {"operation_type": "backtest", "symbol": "AAPL", "timeframe": None, "wait": None},
    )
    assert (started["timeframe"], started["wait"], started["timeout"]) == ("1d", False, 300.0)


def test_null_for_a_required_argument_is_a_usage_error() -> None:
    assert refusal("operations_get", {"operation_id": None}) == (
        "operations_get: argument 'operation_id' is required"
    )
    assert "'name' is required" in refusal("sandbox_create", {"name": None}, UNPINNED)
    assert "'instance' is required" in refusal("sandbox_status", {"instance": None}, UNPINNED)


# --- exact types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("sandbox_logs", {"tail": True}, "'tail' must be an integer"),
        ("sandbox_logs", {"tail": 5.0}, "'tail' must be an integer"),
        ("sandbox_logs", {"tail": "5"}, "'tail' must be an integer"),
        ("sandbox_up", {"timeout": True}, "'timeout' must be a number"),
        ("sandbox_up", {"timeout": "300"}, "'timeout' must be a number"),
        ("sandbox_up", {"timeout": float("nan")}, "'timeout' must be a finite number"),
        ("sandbox_up", {"timeout": float("inf")}, "'timeout' must be a finite number"),
        ("sandbox_up", {"gate": 0}, "'gate' must be true or false"),
        ("sandbox_up", {"build": "false"}, "'build' must be true or false"),
        ("sandbox_logs", {"service": 1}, "'service' must be a string"),
        ("sandbox_test_e2e", {"pytest_args": "-k x"}, "must be a list of strings"),
        ("sandbox_test_e2e", {"pytest_args": ["-k", 1]}, "'pytest_args' item 1 must be a string"),
        ("operations_get", {"operation_id": ["op-1"]}, "'operation_id' must be a string"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(
    tool: str, arguments: dict[str, Any], problem: str
) -> None:
    assert problem in refusal(tool, arguments)


def test_a_float_is_a_number_and_an_int_too() -> None:
    assert checked("sandbox_up", {"timeout": 12.5})["timeout"] == 12.5
    assert checked("sandbox_up", {"timeout": 12})["timeout"] == 12


# --- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("sandbox_up", {"timeout": 0}, "'timeout' must be at least 1"),
        ("sandbox_up", {"timeout": 1e12}, "'timeout' must be at most 86400"),
        ("sandbox_logs", {"tail": -1}, "'tail' must be at least 0"),
        ("sandbox_logs", {"tail": 10**9}, "'tail' must be at most 100000"),
        ("operations_start", {"operation_type": "x", "symbol": "A"}, "must be one of backtest"),
    ],
)
def test_a_value_out_of_range_is_refused(
    tool: str, arguments: dict[str, Any], problem: str
) -> None:
    assert problem in refusal(tool, arguments)


def test_a_slot_out_of_range_is_refused() -> None:
    assert "'slot' must be at most 99" in refusal(
        "sandbox_create", {"name": "x", "slot": 100}, UNPINNED
    )


# --- text: length and control characters ------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"])
def test_a_control_character_in_any_string_is_refused(char: str) -> None:
    message = refusal("sandbox_logs", {"service": f"back{char}end"})
    assert f"contains a control character (U+{ord(char):04X} at position 4)" in message
    assert char not in message
    message = refusal("sandbox_test_e2e", {"pytest_args": ["-k", f"a{char}b"]})
    assert "'pytest_args' item 1 contains a control character" in message


def test_an_overlong_string_is_refused_and_quoted_short() -> None:
    message = refusal("operations_get", {"operation_id": "o" * 100_000})
    assert "is 100000 characters long (at most 256)" in message
    message = refusal("sandbox_test_e2e", {"pytest_args": ["-k", "a" * 200_000]})
    assert "'pytest_args' item 1 is 200000 characters long (at most 1024)" in message


def test_too_many_list_items_are_refused() -> None:
    message = refusal("sandbox_test_e2e", {"pytest_args": ["-v"] * 33})
    assert "'pytest_args' has 33 items (at most 32)" in message


def test_unicode_text_within_the_limits_passes() -> None:
    assert checked("sandbox_logs", {"service": "bäckend-ü"})["service"] == "bäckend-ü"


# --- unknown arguments --------------------------------------------------------------------------


def test_an_unknown_argument_is_refused_and_a_huge_key_is_quoted_short() -> None:
    assert "sandbox_up takes no argument 'timout'" in refusal("sandbox_up", {"timout": 5})
    message = refusal("sandbox_up", {"k" * 100_000: 1})
    assert "kkkk" in message
    assert "takes no argument" in message
    unpinned = refusal("sandbox_logs", {"lines": 5}, UNPINNED)
    assert "(it takes: service, tail, instance)" in unpinned


# --- the schema is the whole description ---------------------------------------------------------


def _leaves(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema["properties"].values())


@pytest.mark.parametrize("scope", [PINNED, UNPINNED], ids=["pinned", "unpinned"])
def test_every_declared_argument_has_limits_a_client_can_see(scope: Scope) -> None:
    for tool in TOOLS:
        schema = tool.input_schema(scope)
        assert schema["additionalProperties"] is False
        for spec in _leaves(schema):
            kind = spec["type"]
            if kind == "string":
                assert spec["maxLength"] <= 4096, tool.name
            elif kind == "array":
                assert spec["maxItems"], tool.name
                assert spec["items"]["maxLength"], tool.name
            elif kind in ("integer", "number"):
                assert "minimum" in spec, tool.name
                assert "maximum" in spec, tool.name
            else:
                assert kind == "boolean", tool.name
                assert isinstance(spec["default"], bool), tool.name
            assert spec.get("description"), tool.name


def test_every_default_passes_its_own_check() -> None:
    from ktrdr.cli.sandbox.mcp.args import value_problem

    for tool in TOOLS:
        for name, spec in tool.input_schema(UNPINNED)["properties"].items():
            if spec.get("default") is not None:
                assert value_problem(spec["default"], spec) is None, (tool.name, name)


def test_a_tool_name_that_is_huge_is_quoted_short() -> None:
    with pytest.raises(KtrdrError) as caught:
        find_tool(PINNED, "x" * 100_000)
    assert caught.value.exit_code == ExitCode.USAGE
    assert len(caught.value.message) < 100


def test_an_unexpected_exception_becomes_a_one_line_tool_error_with_exit_code_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ktrdr.cli.sandbox.mcp.server import _bug, tool_result

    try:
        raise TypeError("unsupported operand\ntype(s)")
    except TypeError as e:
        result = tool_result(None, _bug("sandbox_up", e))
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["exit_code"] == 1
    message = result.structured_content["error"]
    assert "\n" not in message
    assert message.startswith("'sandbox_up' failed unexpectedly (TypeError: unsupported operand")
    assert "Traceback" in capsys.readouterr().err  # the bug's traceback goes to the log

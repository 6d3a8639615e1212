"""Every command-line argument within ktrdr.cli.limits, and names and ids within their
tighter limit: one `Error:` line and exit code 2 where a traceback (`URL too long`, `embedded
null byte`) or a 100 KB echo used to be. Parsed by the real CLI, nothing else runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ktrdr.cli.limits import MAX_NAME, MAX_TEXT, shown, text_problem
from ktrdr.cli.main import cli


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr.splitlines()


@pytest.mark.parametrize(
    "args",
    [
        ["operations", "show", "a" * 70_000],
        ["sandbox", "status", "a" * 100_000],
        ["sandbox", "logs", "a\x01b"],
        ["sandbox", "logs", "--instance", "a\x00b"],
        ["sandbox", "up", "x\ny"],
        ["sandbox", "test-e2e", "-k", "a" * 5000],
        ["sandbox", "create", "feat\t"],
        ["sandbox", "init-shared", "--from", "d\x1b[31m"],
    ],
)
def test_an_argument_beyond_the_limits_is_one_usage_line(args: list[str]) -> None:
    code, lines = run(*args)
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: command-line argument ")
    assert len(lines[0]) < 200


@pytest.mark.parametrize(
    "args",
    [
        ["operations", "show", "o" * 3000],
        ["sandbox", "status", "n" * 300],
        ["sandbox", "logs", "s" * 300],
        ["sandbox", "logs", "--instance", "n" * 300],
        ["sandbox", "down", "n" * 300],
        ["sandbox", "pause", "n" * 300],
        ["sandbox", "resume", "n" * 300],
        ["sandbox", "destroy", "n" * 300],
        ["sandbox", "evidence", "n" * 300],
        ["sandbox", "create", "feat", "--branch", "b" * 300],
        ["sandbox", "mcp", "--instance", "n" * 300],
    ],
)
def test_a_name_or_id_longer_than_its_limit_is_one_usage_line(args: list[str]) -> None:
    code, lines = run(*args)
    assert code == 2
    assert len(lines) == 1, lines
    assert f"characters long (at most {MAX_NAME})" in lines[0]
    assert len(lines[0]) < 200


def test_text_problem_names_the_first_control_character_and_the_length() -> None:
    assert text_problem("ok name/with spaces-ü") is None
    assert text_problem("a" * MAX_TEXT) is None
    assert text_problem("a" * (MAX_TEXT + 1)) == f"is {MAX_TEXT + 1} characters long (at most 4096)"
    assert text_problem("ab\x00") == "contains a control character (U+0000 at position 2)"
    assert text_problem("\u2028") is None  # a line separator is a format character, not C0/C1
    assert shown("a\x00b") == "'a\\x00b'"
    assert shown("x" * 100) == repr("x" * 40) + "…"

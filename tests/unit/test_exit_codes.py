"""The exit-code table (ktrdr.errors.ExitCode) and the root group owning Ctrl-C."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ktrdr.cli import entry
from ktrdr.cli.main import KtrdrGroup
from ktrdr.cli.sandbox.base.errors import GateFailedError, SandboxError
from ktrdr.cli.target import BadTargetError
from ktrdr.errors import ExitCode, Interrupted, KtrdrError


def test_the_table_has_one_code_per_meaning() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 130]


def test_errors_carry_the_codes_of_the_table() -> None:
    assert KtrdrError("x").exit_code == SandboxError("x").exit_code == ExitCode.FAILURE
    assert BadTargetError("x").exit_code == ExitCode.USAGE
    assert GateFailedError("x").exit_code == ExitCode.GATE_FAILED


def test_click_usage_errors_and_the_console_script_agree_with_the_table() -> None:
    assert click.UsageError("x").exit_code == ExitCode.USAGE
    assert entry.INTERRUPTED == ExitCode.INTERRUPTED


def _root(failure: BaseException) -> click.Group:
    @click.group(cls=KtrdrGroup)
    def root() -> None:
        pass

    @root.command()
    @click.argument("anything", required=False)
    def work(anything: str | None) -> None:
        raise failure

    return root


@pytest.mark.parametrize(
    ("failure", "stderr"),
    [
        (
            KeyboardInterrupt(),
            "\nInterrupted: `root work now` stopped before it finished; run it again "
            "(`ktrdr sandbox doctor` reports anything left half-done)\n",
        ),
        (
            Interrupted("destroy of x stopped midway: rerun it"),
            "\ndestroy of x stopped midway: rerun it\n",
        ),
        (Interrupted(), ""),
    ],
)
def test_the_root_turns_every_ctrl_c_into_its_words_and_exit_130(
    failure: BaseException, stderr: str
) -> None:
    result = CliRunner().invoke(_root(failure), ["work", "now"])
    assert result.exit_code == ExitCode.INTERRUPTED == 130
    assert result.stderr == stderr
    assert result.stdout == ""


def test_the_root_ends_an_error_with_its_own_exit_code() -> None:
    result = CliRunner().invoke(_root(GateFailedError("gate failed")), ["work"])
    assert result.exit_code == 3
    assert result.stderr == "Error: gate failed\n"

"""Commands on an instance that has no containers, asked of the real engine: they say the stack
is down instead of printing nothing. The instance fixtures (tests/conftest.py) are the unit
tests' own."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ktrdr.cli.main import cli
from tests.support.instances import INSTANCE_ID


def test_test_e2e_says_clearly_when_the_stack_is_not_up(instance: Path) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "test-e2e"])
    assert result.exit_code == 1
    assert f"instance {instance.name} is not up (backend: not created)" in result.stderr
    assert "ktrdr sandbox up" in result.stderr


def test_logs_of_an_instance_without_containers_says_it_is_down(instance_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["sandbox", "logs", "backend"])
    assert result.exit_code == 1
    assert f"instance {INSTANCE_ID} has no containers (it is down" in result.stderr
    assert "`ktrdr sandbox up` first" in result.stderr

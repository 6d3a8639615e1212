"""The background start a hook leaves running: detached, logged under the home, launched once
per instance, visible in `status`, stopped before its instance is destroyed.

The started program is a stand-in for `ktrdr sandbox up` (a shell script printing gate lines,
then waiting): there is no engine in unit tests. The real start is in
tests/integration/test_agent_hooks.py.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.agent_tools import background
from ktrdr.cli.sandbox.home import owned_process, registry
from tests.support import slots

CREATE = ["sandbox", "hook", "claude-code", "worktree-create"]
REMOVE = ["sandbox", "hook", "claude-code", "worktree-remove"]
UP_STAND_IN = """#!/bin/sh
echo "Starting instance: $3"
echo "  ✓ Database ready (0.1s)"
sleep "${UP_STAND_IN_SECONDS:-60}"
echo "Startability Gate: PASSED"
"""


@pytest.fixture(autouse=True)
def up_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker: Any) -> Iterator[Path]:
    """`ktrdr` as a background start runs it: the stand-in script. Every start still running at
    the end is stopped."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)
    script = tmp_path / "bin" / "ktrdr"
    script.parent.mkdir()
    script.write_text(UP_STAND_IN)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("ktrdr.cli.sandbox.mcp.config.ktrdr_executable", lambda: script)
    yield script
    for directory in owned_process.state_root().glob("*"):
        owned_process.stop_all(directory, grace=1)


def invoke(args: list[str], data: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=json.dumps(data) if data is not None else None)


def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def record(instance_id: str) -> owned_process.OwnedProcess:
    found = owned_process.load(owned_process.state_dir(instance_id), background.KIND)
    assert found is not None
    return found


def test_the_hook_starts_the_stack_in_the_background_once(
    stack_repo: Path, isolated_ktrdr_home: Path
) -> None:
    out = invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert out.exit_code == 0, out.stderr
    log = isolated_ktrdr_home / "run" / "ktrdr--feat-a" / "start.log"
    assert f"stack starting in the background (log: {log})" in out.stderr
    started = record("ktrdr--feat-a")
    assert started.argv[1:] == ["sandbox", "up", "ktrdr--feat-a"]
    until(lambda: "✓ Database ready" in log.read_text())
    assert "Starting instance: ktrdr--feat-a" in log.read_text()
    again = invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert again.exit_code == 0, again.stderr
    assert record("ktrdr--feat-a").pid == started.pid  # not launched a second time
    assert owned_process.alive(started)


def test_status_shows_where_the_background_start_is(stack_repo: Path) -> None:
    invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    log = owned_process.state_dir("ktrdr--feat-a") / "start.log"
    until(lambda: "✓ Database ready" in log.read_text())
    shown = invoke(["sandbox", "status", "feat-a", "--json"])
    assert shown.exit_code == 0, shown.stderr
    start = json.loads(shown.stdout)["background_start"]
    assert (start["running"], start["log"], start["last_line"]) == (
        True,
        str(log),
        "✓ Database ready (0.1s)",
    )
    text = invoke(["sandbox", "status", "feat-a"]).stdout
    assert f"Start:           background, running (log {log}): ✓ Database ready (0.1s)\n" in text


def test_a_finished_start_shows_as_ended_with_its_last_line(
    stack_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_STAND_IN_SECONDS", "0")
    invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    until(lambda: not owned_process.alive(record("ktrdr--feat-a")))
    start = json.loads(invoke(["sandbox", "status", "feat-a", "--json"]).stdout)
    assert (start["background_start"]["running"], start["background_start"]["last_line"]) == (
        False,
        "Startability Gate: PASSED",
    )


def test_a_start_recorded_for_an_earlier_instance_of_that_id_is_not_shown(
    stack_repo: Path,
) -> None:
    invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    with registry.transaction() as entries:  # as if destroyed and made again since
        entries["ktrdr--feat-a"].created_at = "2099-01-01T00:00:00Z"
    shown = json.loads(invoke(["sandbox", "status", "feat-a", "--json"]).stdout)
    assert "background_start" not in shown


def test_remove_stops_a_running_start_before_destroying(stack_repo: Path) -> None:
    path = Path(invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)}).stdout.strip())
    started = record("ktrdr--feat-a")
    out = invoke(REMOVE, {"worktree_path": str(path)})
    assert out.exit_code == 0, out.stderr
    assert "note: stopped its background start" in out.stderr
    assert not owned_process.alive(started)
    assert not owned_process.state_dir("ktrdr--feat-a").exists()
    assert registry.load() == {}


def test_on_demand_starts_nothing(stack_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KTRDR_HOOK_START", "on-demand")
    out = invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert out.exit_code == 0, out.stderr
    assert "stack not started: the agent's `sandbox_up`" in out.stderr
    assert not owned_process.state_dir("ktrdr--feat-a").exists()
    flag = invoke([*CREATE, "--start", "background"], {"name": "feat-b", "cwd": str(stack_repo)})
    assert flag.exit_code == 0, flag.stderr
    assert record("ktrdr--feat-b").argv[1:] == ["sandbox", "up", "ktrdr--feat-b"]


def test_a_bad_start_setting_is_a_usage_error(
    stack_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRDR_HOOK_START", "later")
    out = invoke(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert out.exit_code == 2
    assert "KTRDR_HOOK_START='later': use one of background, on-demand" in out.stderr
    assert registry.load() == {}

"""`ktrdr sandbox hook setup` / `teardown`, the entry points for tools that run a script in a
fresh worktree: setup twice is one instance and the same output; teardown takes out what setup
made and leaves the user's files; a committed `.mcp.json` comes back byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.journal import log as journal
from tests.support import slots
from tests.support.git_repos import git, make_repo
from tests.support.hooks import make_stack_repo


@pytest.fixture(autouse=True)
def _stand_ins(monkeypatch: pytest.MonkeyPatch, docker: Any) -> None:
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)
    monkeypatch.setenv("KTRDR_HOOK_START", "on-demand")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A worktree a tool made (`git worktree add`), with the sandbox stack's compose file."""
    main = make_stack_repo(tmp_path / "work" / "ktrdr")
    path = tmp_path / "conductor" / "workspaces" / "ktrdr" / "lisbon"
    git(main, "worktree", "add", "-q", "-b", "lisbon", str(path))
    monkeypatch.chdir(path)
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sandbox", "hook", *args])


def test_setup_makes_the_checkout_an_instance_and_a_second_run_prints_the_same(
    workspace: Path,
) -> None:
    first = run("setup")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == (
        "Instance:   lisbon\n"
        f"Location:   {workspace}\n"
        "Slot:       1\n"
        "API:        http://localhost:8001\n"
        f"MCP config: {workspace / '.mcp.json'}\n"
        "Start:      on-demand\n"
    )
    assert first.stderr == "set up: a new instance\n"
    again = run("setup")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    assert again.stderr == "already set up: nothing changed\n"
    assert list(registry.load()) == ["lisbon"]
    assert git(workspace, "status", "--porcelain") == ""


def test_setup_json_is_the_same_on_every_run(workspace: Path) -> None:
    first, again = run("setup", "--json"), run("setup", "--json")
    assert json.loads(first.stdout) == json.loads(again.stdout)
    assert json.loads(first.stdout) == {
        "path": str(workspace),
        "instance_id": "lisbon",
        "slot": 1,
        "api_url": "http://localhost:8001",
        "mcp_config": {"path": str(workspace / ".mcp.json"), "server": "ktrdr-lisbon"},
        "start": {"mode": "on-demand", "log": None},
    }


def test_teardown_takes_out_the_instance_and_our_files_and_keeps_the_checkout(
    workspace: Path, docker: Any
) -> None:
    run("setup")
    out = run("teardown")
    assert out.exit_code == 0, out.stderr
    assert "destroyed instance lisbon (slot released)" in out.stderr
    assert registry.load() == {}
    assert workspace.is_dir()  # the tool removes its worktree itself
    assert not (workspace / ".env.sandbox").exists()
    assert not (workspace / ".mcp.json").exists()
    assert [down[0] for down in docker.downs] == ["lisbon"]
    again = run("teardown", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["instance_id"] is None
    assert "nothing to tear down" in again.stderr


def test_teardown_leaves_the_users_own_servers_in_an_untracked_mcp_json(
    workspace: Path,
) -> None:
    (workspace / ".mcp.json").write_text(json.dumps({"mcpServers": {"mine": {"command": "m"}}}))
    run("setup")
    both = json.loads((workspace / ".mcp.json").read_text())["mcpServers"]
    assert sorted(both) == ["ktrdr-lisbon", "mine"]
    run("teardown")
    assert json.loads((workspace / ".mcp.json").read_text()) == {
        "mcpServers": {"mine": {"command": "m"}}
    }


def test_teardown_restores_a_committed_mcp_json_byte_for_byte(workspace: Path) -> None:
    committed = '{ "mcpServers": { "docs": { "command": "docs-server" } } }\n'
    (workspace / ".mcp.json").write_text(committed)
    git(workspace, "add", ".mcp.json")
    git(workspace, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "mcp")
    run("setup")
    assert "ktrdr-lisbon" in json.loads((workspace / ".mcp.json").read_text())["mcpServers"]
    assert git(workspace, "status", "--porcelain") == ""
    run("teardown")
    assert (workspace / ".mcp.json").read_text() == committed
    assert git(workspace, "ls-files", "-v", ".mcp.json").startswith("H ")  # no skip-worktree
    assert git(workspace, "status", "--porcelain") == ""


def test_teardown_of_a_worktree_with_work_in_it_keeps_the_work(workspace: Path) -> None:
    run("setup")
    (workspace / "notes.txt").write_text("mine\n")
    out = run("teardown")
    assert out.exit_code == 0, out.stderr  # a clone's files are never deleted
    assert (workspace / "notes.txt").read_text() == "mine\n"


def test_setup_and_teardown_are_journaled(workspace: Path) -> None:
    run("setup")
    run("setup")
    run("teardown", "--force")
    records = journal.read().records
    assert [(r.command, r.instance, r.exit_code) for r in records] == [
        ("hook setup", "lisbon", 0),
        ("hook setup", "lisbon", 0),
        ("hook teardown", "lisbon", 0),
    ]
    assert records[2].args == {"force": True}
    assert records[0].actor.startswith("hook:script (user:")


def test_a_second_checkout_of_the_same_directory_name_is_refused_naming_the_first(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("setup")
    other = make_repo(tmp_path / "codex" / "worktrees" / "b7" / "lisbon")
    (other / "docker-compose.sandbox.yml").write_text("services: {}\n")
    monkeypatch.chdir(other)
    out = run("setup")
    assert out.exit_code == 1
    assert out.stderr == (
        f"Error: instance id lisbon is taken by {workspace} (slot 1): an id is its directory's "
        f"name; rename {other}, or destroy that instance first\n"
    )
    assert list(registry.load()) == ["lisbon"]

"""`ktrdr sandbox hook claude-code worktree-create` / `worktree-remove` against real git repos:
every recorded payload shape, the pinned `.mcp.json`, names, reuse, refusals, the journal."""

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
from tests.support.hooks import CREATE_SHAPES, payload
from tests.support.instances import register_instance

CREATE = ["sandbox", "hook", "claude-code", "worktree-create"]
REMOVE = ["sandbox", "hook", "claude-code", "worktree-remove"]


@pytest.fixture(autouse=True)
def _stand_ins(monkeypatch: pytest.MonkeyPatch, docker: Any) -> None:
    """Every port free (slot numbers as the docs show them), the engine a stand-in, and no
    background start: these tests are about the worktree, test_agent_hooks_start about that."""
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)
    slots.use_the_default_range(monkeypatch)
    monkeypatch.setenv("KTRDR_HOOK_START", "on-demand")


def hook(args: list[str], data: dict[str, Any] | str) -> Result:
    text = data if isinstance(data, str) else json.dumps(data)
    return CliRunner().invoke(cli, args, input=text)


def head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("shape", CREATE_SHAPES)
def test_each_recorded_payload_makes_an_instance_and_prints_only_its_path(
    stack_repo: Path, isolated_ktrdr_home: Path, shape: str
) -> None:
    first = git(stack_repo, "rev-list", "--max-parents=0", "HEAD").strip()
    data = payload(shape, repo=str(stack_repo), base=first)
    out = hook(CREATE, data)
    assert out.exit_code == 0, out.stderr
    path = Path(out.stdout.strip())
    assert out.stdout == f"{path}\n"
    assert path.parent == stack_repo.parent
    assert path.name.startswith("ktrdr--")
    (entry,) = registry.load().values()
    assert (entry.root, entry.kind, entry.state) == (path, "worktree", "ready")
    assert git(path, "rev-parse", "--git-common-dir").strip() == str(stack_repo / ".git")
    base = data.get("base_commit") or data.get("base_ref")
    assert head(path) == (first if base else head(stack_repo))
    server = json.loads((path / ".mcp.json").read_text())["mcpServers"]
    assert server == {
        f"ktrdr-{entry.instance_id}": {
            "command": server[f"ktrdr-{entry.instance_id}"]["command"],
            "args": ["sandbox", "mcp", "--instance", entry.instance_id],
            "env": {"KTRDR_HOME": str(isolated_ktrdr_home)},
        }
    }
    assert Path(server[f"ktrdr-{entry.instance_id}"]["command"]).is_absolute()
    assert git(path, "status", "--porcelain") == ""  # .mcp.json is excluded like .env.sandbox
    assert f"created instance {entry.instance_id} (slot 1)" in out.stderr


def test_a_name_the_rules_refuse_is_made_valid_and_said(stack_repo: Path) -> None:
    out = hook(CREATE, {"name": "Feature/Auth flow", "cwd": str(stack_repo)})
    assert out.exit_code == 0, out.stderr
    assert Path(out.stdout.strip()).name == "ktrdr--Feature-Auth-flow"
    assert "note: worktree name 'Feature/Auth flow' became 'Feature-Auth-flow'" in out.stderr


def test_the_same_name_again_gives_the_same_instance(stack_repo: Path) -> None:
    data = {"name": "feat-a", "cwd": str(stack_repo)}
    first, again = hook(CREATE, data), hook(CREATE, data)
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    assert "reused instance ktrdr--feat-a (slot 1)" in again.stderr
    assert list(registry.load()) == ["ktrdr--feat-a"]


def test_a_kept_branch_of_that_name_is_checked_out_again(stack_repo: Path) -> None:
    first = git(stack_repo, "rev-list", "--max-parents=0", "HEAD").strip()
    git(stack_repo, "branch", "feat-old", first)
    out = hook(CREATE, {"name": "feat-old", "base_commit": "main", "cwd": str(stack_repo)})
    assert out.exit_code == 0, out.stderr
    path = Path(out.stdout.strip())
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feat-old"
    assert head(path) == first
    assert "branch feat-old exists: checked out as it is (the payload's base is ignored)" in (
        out.stderr
    )


def test_the_repository_comes_from_claude_project_dir_when_the_payload_names_none(
    stack_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the session's shell may have left the repository
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(stack_repo))
    out = hook(CREATE, {"name": "feat-a"})
    assert out.exit_code == 0, out.stderr
    assert Path(out.stdout.strip()) == stack_repo.parent / "ktrdr--feat-a"


def test_outside_any_checkout_the_hook_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = hook(CREATE, {"name": "feat-a", "cwd": str(tmp_path)})
    assert out.exit_code == 1
    assert out.stdout == ""
    assert out.stderr.startswith("Error: no git checkout to make the worktree from (tried: ")
    assert out.stderr.count("\n") == 1


def test_a_committed_mcp_json_keeps_its_servers_and_git_status_stays_clean(
    stack_repo: Path,
) -> None:
    theirs = {"mcpServers": {"docs": {"command": "docs-server"}}, "note": "team servers"}
    (stack_repo / ".mcp.json").write_text(json.dumps(theirs, indent=4) + "\n")
    git(stack_repo, "add", ".mcp.json")
    git(stack_repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "mcp")
    out = hook(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert out.exit_code == 0, out.stderr
    path = Path(out.stdout.strip())
    merged = json.loads((path / ".mcp.json").read_text())
    assert merged["note"] == "team servers"
    assert sorted(merged["mcpServers"]) == ["docs", "ktrdr-ktrdr--feat-a"]
    assert git(path, "status", "--porcelain") == ""
    assert git(path, "ls-files", "-v", ".mcp.json").startswith("S ")  # skip-worktree
    assert git(stack_repo, "ls-files", "-v", ".mcp.json").startswith("H ")  # only there


def test_an_unusable_committed_mcp_json_is_left_alone_with_a_note(stack_repo: Path) -> None:
    (stack_repo / ".mcp.json").write_text("{not json\n")
    git(stack_repo, "add", ".mcp.json")
    git(stack_repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-qm", "mcp")
    out = hook(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert out.exit_code == 0, out.stderr
    path = Path(out.stdout.strip())
    assert (path / ".mcp.json").read_text() == "{not json\n"
    assert "is not valid JSON (line 1, column 2): left as it is, no pinned server" in out.stderr


def test_with_every_slot_taken_the_hook_names_the_holders_and_how_to_free_one(
    stack_repo: Path, tmp_path: Path
) -> None:
    for slot in range(1, 11):
        holder = tmp_path / f"clone{slot}"
        holder.mkdir()
        register_instance(holder, slot=slot)
    out = hook(CREATE, {"name": "feat-a", "cwd": str(stack_repo)})
    assert out.exit_code == 1
    assert out.stdout == ""
    assert out.stderr.startswith("Error: no free slot in 1..10 (instances: clone1 (slot 1), ")
    assert "free one with `ktrdr sandbox destroy NAME`" in out.stderr
    assert out.stderr.count("\n") == 1
    assert not (stack_repo.parent / "ktrdr--feat-a").exists()  # create rolled back


def test_a_repository_without_a_sandbox_stack_gets_a_plain_worktree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = make_repo(tmp_path / "other")
    monkeypatch.chdir(plain)
    out = hook(CREATE, {"name": "agent-1", "cwd": str(plain)})
    assert out.exit_code == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path == plain / ".claude" / "worktrees" / "agent-1"
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "worktree-agent-1"
    assert registry.load() == {}
    assert git(plain, "status", "--porcelain") == ""  # .claude/worktrees/ is excluded
    gone = hook(REMOVE, {"worktree_path": str(path)})
    assert gone.exit_code == 0, gone.stderr
    assert not path.exists()
    assert "worktree-agent-1" in git(plain, "branch")  # the branch stays, as with destroy


def test_remove_destroys_the_instance_and_frees_its_slot(stack_repo: Path, docker: Any) -> None:
    made = hook(CREATE, payload("create_name", repo=str(stack_repo)))
    path = Path(made.stdout.strip())
    out = hook(REMOVE, payload("remove", repo=str(stack_repo), worktree=str(path)))
    assert out.exit_code == 0, out.stderr
    assert out.stdout == ""
    assert not path.exists()
    assert registry.load() == {}
    assert [down[0] for down in docker.downs] == ["ktrdr--agent-a1b2c3d4"]
    assert "destroyed instance ktrdr--agent-a1b2c3d4 (slot released)" in out.stderr


def test_remove_refuses_uncommitted_work_in_one_line_and_force_discards_it(
    stack_repo: Path,
) -> None:
    path = Path(hook(CREATE, {"name": "feat-a", "cwd": str(stack_repo)}).stdout.strip())
    (path / "scratch.txt").write_text("work in progress\n")
    out = hook(REMOVE, {"worktree_path": str(path)})
    assert out.exit_code == 1
    assert out.stderr == (
        f"Error: worktree {path} has uncommitted or untracked changes (scratch.txt): kept it "
        "and its stack; commit them and run `ktrdr sandbox destroy ktrdr--feat-a`, or add "
        "--force to the hook's command to discard such changes\n"
    )
    assert (path / "scratch.txt").is_file()
    assert list(registry.load()) == ["ktrdr--feat-a"]
    forced = hook([*REMOVE, "--force"], {"worktree_path": str(path)})
    assert forced.exit_code == 0, forced.stderr
    assert not path.exists()
    assert registry.load() == {}


def test_remove_of_a_directory_no_instance_owns_is_refused(stack_repo: Path) -> None:
    out = hook(REMOVE, {"worktree_path": str(stack_repo)})
    assert out.exit_code == 1
    assert out.stderr.startswith(f"Error: {stack_repo} is not an instance of this home (")
    assert stack_repo.is_dir()


def test_remove_of_a_path_already_gone_changes_nothing(tmp_path: Path) -> None:
    out = hook(REMOVE, {"worktree_path": str(tmp_path / "gone")})
    assert out.exit_code == 0, out.stderr
    assert "is gone and no instance of this home is there" in out.stderr


def test_each_hook_run_leaves_one_journal_record(stack_repo: Path) -> None:
    path = Path(hook(CREATE, {"name": "feat-a", "cwd": str(stack_repo)}).stdout.strip())
    hook(CREATE, "[]")
    hook(REMOVE, {"worktree_path": str(path)})
    records = journal.read().records
    assert [(r.command, r.instance, r.exit_code) for r in records] == [
        ("hook claude-code worktree-create", "ktrdr--feat-a", 0),
        ("hook claude-code worktree-create", None, 1),
        ("hook claude-code worktree-remove", "ktrdr--feat-a", 0),
    ]
    assert all(r.actor.startswith("hook:claude-code (user:") for r in records)
    assert records[0].args["name"] == "feat-a"
    assert records[1].result == "hook payload is a JSON list, not an object: not a hook payload"

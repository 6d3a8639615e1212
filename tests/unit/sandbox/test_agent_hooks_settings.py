"""`ktrdr sandbox hooks install|uninstall claude-code` against settings files that already hold
the user's own hooks: merged without dropping anything, idempotent, a dry run that only shows
the diff, a corrupt file never written, uninstall taking out only ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox.journal import log as journal
from tests.support.git_repos import make_repo

THEIRS: dict[str, Any] = {
    "permissions": {"allow": ["Bash(make test)"]},
    "env": {"FOO": "1"},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "guard.sh"}]}],
        "WorktreeRemove": [{"hooks": [{"type": "command", "command": "notify-send removed"}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "say done", "timeout": 5}]}],
    },
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_repo(tmp_path / "work" / "ktrdr")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def settings_file(project: Path) -> Path:
    path = project / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps(THEIRS, indent=2) + "\n")
    return path


def hooks(*args: str) -> Result:
    return CliRunner().invoke(cli, ["sandbox", "hooks", *args])


def commands(data: dict[str, Any], event: str) -> list[str]:
    return [h["command"] for g in data["hooks"].get(event, []) for h in g["hooks"]]


def test_install_adds_both_hooks_and_keeps_every_entry_of_the_user(
    settings_file: Path, isolated_ktrdr_home: Path
) -> None:
    out = hooks("install", "claude-code")
    assert out.exit_code == 0, out.stderr
    assert out.stderr == f"installed the hooks in {settings_file}\n"
    data = json.loads(settings_file.read_text())
    assert {k: v for k, v in data.items() if k != "hooks"} == {
        "permissions": THEIRS["permissions"],
        "env": THEIRS["env"],
    }
    for event in ("PreToolUse", "Stop"):
        assert data["hooks"][event] == THEIRS["hooks"][event]
    (create,) = commands(data, "WorktreeCreate")
    remove = commands(data, "WorktreeRemove")
    assert remove[0] == "notify-send removed"
    assert create.startswith(f"KTRDR_HOME={isolated_ktrdr_home} /")
    assert create.endswith(" sandbox hook claude-code worktree-create")
    assert remove[1].endswith(" sandbox hook claude-code worktree-remove")
    assert data["hooks"]["WorktreeCreate"][0]["hooks"][0]["timeout"] == 120


def test_install_twice_changes_nothing_the_second_time(settings_file: Path) -> None:
    hooks("install", "claude-code")
    before = settings_file.read_bytes()
    again = hooks("install", "claude-code")
    assert again.exit_code == 0, again.stderr
    assert again.stderr == f"nothing to change in {settings_file}: already installed\n"
    assert settings_file.read_bytes() == before


def test_install_with_another_home_updates_ours_in_place(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hooks("install", "claude-code")
    monkeypatch.setenv("KTRDR_HOME", str(tmp_path / "other-home"))
    assert hooks("install", "claude-code").exit_code == 0
    data = json.loads(settings_file.read_text())
    (create,) = commands(data, "WorktreeCreate")
    assert create.startswith(f"KTRDR_HOME={tmp_path / 'other-home'} ")
    assert len(commands(data, "WorktreeRemove")) == 2


def test_a_dry_run_prints_the_diff_and_writes_nothing(settings_file: Path) -> None:
    before = settings_file.read_bytes()
    out = hooks("install", "claude-code", "--dry-run")
    assert out.exit_code == 0, out.stderr
    assert settings_file.read_bytes() == before
    assert out.stdout.startswith(f"--- {settings_file}\n+++ {settings_file}\n@@")
    assert '+    "WorktreeCreate": [' in out.stdout
    assert "nothing was written" in out.stderr
    as_json = json.loads(hooks("install", "claude-code", "--dry-run", "--json").stdout)
    assert as_json == {
        "path": str(settings_file),
        "changed": True,
        "dry_run": True,
        "diff": out.stdout,
    }


def test_uninstall_takes_out_only_ours(settings_file: Path) -> None:
    hooks("install", "claude-code")
    out = hooks("uninstall", "claude-code")
    assert out.exit_code == 0, out.stderr
    assert out.stderr == f"took the hooks out of {settings_file}\n"
    assert json.loads(settings_file.read_text()) == THEIRS
    again = hooks("uninstall", "claude-code")
    assert again.stderr == f"nothing to change in {settings_file}: no hooks of ktrdr in it\n"


def test_uninstall_drops_what_only_ours_filled(project: Path) -> None:
    path = project / ".claude" / "settings.json"
    hooks("install", "claude-code")
    assert json.loads(path.read_text())["hooks"].keys() == {"WorktreeCreate", "WorktreeRemove"}
    hooks("uninstall", "claude-code")
    assert json.loads(path.read_text()) == {}


def test_uninstall_keeps_the_users_own_empty_lists(settings_file: Path) -> None:
    settings_file.write_text(json.dumps({"hooks": {"WorktreeRemove": []}}))
    before = settings_file.read_bytes()
    out = hooks("uninstall", "claude-code")
    assert out.exit_code == 0, out.stderr
    assert settings_file.read_bytes() == before


def test_install_makes_the_file_and_its_directory(project: Path) -> None:
    out = hooks("install", "claude-code")
    assert out.exit_code == 0, out.stderr
    data = json.loads((project / ".claude" / "settings.json").read_text())
    assert sorted(data["hooks"]) == ["WorktreeCreate", "WorktreeRemove"]


def test_a_corrupt_settings_file_is_reported_and_never_written(settings_file: Path) -> None:
    settings_file.write_text('{"hooks": {,}\n')
    for verb in ("install", "uninstall"):
        out = hooks(verb, "claude-code")
        assert out.exit_code == 1
        assert out.stderr == (
            f"Error: {settings_file} is not valid JSON (Expecting property name enclosed in "
            "double quotes at line 1, column 12): fix it first (Claude Code cannot read it "
            "either); nothing was changed\n"
        )
        assert settings_file.read_text() == '{"hooks": {,}\n'


def test_hooks_of_the_wrong_shape_are_refused(settings_file: Path) -> None:
    settings_file.write_text(json.dumps({"hooks": {"WorktreeCreate": {"command": "x"}}}))
    out = hooks("install", "claude-code")
    assert out.exit_code == 1
    assert "`hooks.WorktreeCreate` is not a list of hook groups" in out.stderr


def test_another_worktree_create_hook_is_refused(settings_file: Path) -> None:
    theirs = {"hooks": {"WorktreeCreate": [{"hooks": [{"type": "command", "command": "wt"}]}]}}
    settings_file.write_text(json.dumps(theirs))
    out = hooks("install", "claude-code")
    assert out.exit_code == 1
    assert out.stderr.startswith(
        f"Error: {settings_file} already has a WorktreeCreate hook ('wt'): Claude Code would run "
        "both"
    )
    assert json.loads(settings_file.read_text()) == theirs


def test_user_scope_follows_claude_config_dir_and_writes_through_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    dotfiles = tmp_path / "dotfiles" / "claude-settings.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text(json.dumps(THEIRS))
    config = tmp_path / "claude-config"
    config.mkdir()
    (config / "settings.json").symlink_to(dotfiles)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    out = hooks("install", "claude-code", "--user")
    assert out.exit_code == 0, out.stderr
    assert (config / "settings.json").is_symlink()  # the dotfiles link survives
    assert commands(json.loads(dotfiles.read_text()), "WorktreeCreate")
    assert not (project / ".claude").exists()


def test_local_scope_writes_settings_local_json(project: Path) -> None:
    out = hooks("install", "claude-code", "--local")
    assert out.exit_code == 0, out.stderr
    assert (project / ".claude" / "settings.local.json").is_file()
    assert not (project / ".claude" / "settings.json").exists()


def test_install_and_uninstall_are_journaled_but_not_a_dry_run(settings_file: Path) -> None:
    hooks("install", "claude-code", "--dry-run")
    hooks("install", "claude-code")
    hooks("install", "claude-code")  # no change: nothing to record
    hooks("uninstall", "claude-code")
    records = journal.read().records
    assert [(r.command, r.exit_code) for r in records] == [
        ("hooks install claude-code", 0),
        ("hooks uninstall claude-code", 0),
    ]
    assert records[0].args == {"scope": "project", "path": str(settings_file)}

"""A hook's worktree name made valid, and the pinned `.mcp.json` written only where it is ours
to write (never through a link the agent left in its worktree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.agent_tools.naming import instance_name
from ktrdr.cli.sandbox.agent_tools.pin import pin, unpin
from ktrdr.cli.sandbox.home.instance import validate_create_name
from tests.support.git_repos import make_repo

CHECKOUT = Path("/work/ktrdr")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("agent-a1b2c3d4", "agent-a1b2c3d4"),
        ("feature/auth", "feature-auth"),
        ("föö bar", "foo-bar"),
        ("..hidden.lock", "hidden"),
    ],
)
def test_a_hook_name_becomes_a_valid_create_name(raw: str, expected: str) -> None:
    assert instance_name(raw, CHECKOUT) == expected


def test_a_name_with_too_little_latin_left_becomes_agent_and_a_hash() -> None:
    name = instance_name("日本語のブランチ", CHECKOUT)
    assert name.startswith("agent-")
    assert instance_name("日本語のブランチ", CHECKOUT) == name  # the same name every time
    validate_create_name(name, max_length=56)


def test_a_long_name_is_cut_to_the_checkouts_limit() -> None:
    name = instance_name("x" * 80, CHECKOUT)
    assert len(name) == 56  # 63 - len("ktrdr--")
    validate_create_name(name, max_length=56)


def test_a_symlinked_mcp_json_is_left_alone(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "ktrdr--feat-a")
    target = tmp_path / "elsewhere.json"
    target.write_text("{}\n")
    (root / ".mcp.json").symlink_to(target)
    result = pin(root, "ktrdr--feat-a")
    assert result.action == "refused"
    assert result.note == f"{root / '.mcp.json'} is a symbolic link: left as it is"
    assert target.read_text() == "{}\n"
    assert unpin(root, "ktrdr--feat-a") is False


def test_pinning_twice_changes_nothing_and_unpinning_removes_only_ours(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "ktrdr--feat-a")
    assert pin(root, "ktrdr--feat-a").action == "written"
    before = (root / ".mcp.json").read_bytes()
    assert pin(root, "ktrdr--feat-a").action == "unchanged"
    assert (root / ".mcp.json").read_bytes() == before
    assert unpin(root, "ktrdr--feat-a") is True
    assert not (root / ".mcp.json").exists()


def test_an_mcp_json_whose_servers_are_no_object_is_refused(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "ktrdr--feat-a")
    (root / ".mcp.json").write_text(json.dumps({"mcpServers": []}))
    result = pin(root, "ktrdr--feat-a")
    assert result.action == "refused"
    assert "`mcpServers` is not an object" in str(result.note)
    assert json.loads((root / ".mcp.json").read_text()) == {"mcpServers": []}

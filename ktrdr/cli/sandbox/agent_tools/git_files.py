"""The git calls on one file of a checkout that pinning a committed `.mcp.json` needs: is it
tracked, its committed text, hiding our change from `git status` (skip-worktree, which lives
in that worktree's own index) and undoing both. instances/worktree.py has the commands on
worktrees."""

from __future__ import annotations

from pathlib import Path

from ktrdr.cli.sandbox.base.proc import run
from ktrdr.cli.sandbox.instances.worktree import GIT_TIMEOUT


def _git(root: Path, *args: str, what: str, check: bool = True) -> tuple[int, str]:
    result = run(["git", "-C", root, *args], timeout=GIT_TIMEOUT, what=what, check=check)
    return result.returncode, result.stdout


def is_tracked(root: Path, relative: str) -> bool:
    code, _ = _git(
        root, "ls-files", "--error-unmatch", "--", relative, what="git ls-files", check=False
    )
    return code == 0


def committed_text(root: Path, relative: str) -> str | None:
    """The file as HEAD has it, or None when HEAD has no such file."""
    code, out = _git(root, "show", f"HEAD:{relative}", what="git show", check=False)
    return out if code == 0 else None


def skip_worktree(root: Path, relative: str, *, on: bool) -> None:
    """Hide (or show again) local changes of a tracked file from `git status` and commits."""
    flag = "--skip-worktree" if on else "--no-skip-worktree"
    _git(root, "update-index", flag, "--", relative, what="git update-index")


def restore(root: Path, relative: str) -> None:
    """The committed version back in the worktree."""
    _git(root, "checkout", "--", relative, what="git checkout")

"""The hooks in a repository without a sandbox stack (no docker-compose.sandbox.yml): installed
for the user (`hooks install claude-code --user`), they run for every repository the user opens,
and there they do what Claude Code itself would have done: a plain worktree at
`<repo>/.claude/worktrees/<name>` on a new branch `worktree-<name>`, and no instance."""

from __future__ import annotations

from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE
from ktrdr.cli.sandbox.instances import worktree

PLACE = Path(".claude") / "worktrees"
EXCLUDE_PATTERN = "/.claude/worktrees/"


def has_stack(top: Path) -> bool:

    return (top / COMPOSE_FILE).is_file()


def create(top: Path, name: str, *, base: str | None) -> tuple[Path, bool]:
    """The worktree at `<top>/.claude/worktrees/<name>`: made, or found already there (a
    reused name). Returns (path, reused)."""
    path = top / PLACE / name
    branch = f"worktree-{name}"
    if path.is_dir() and worktree.is_registered(top, path):
        return path, True
    worktree.check_branch_name(top, branch)
    if base is not None:
        worktree.check_commit(top, base)
    with worktree.repo_lock(top):
        worktree.ensure_excluded(top, (EXCLUDE_PATTERN,))
        exists = worktree.branch_exists(top, branch)
        worktree.add(
            top,
            path,
            new_branch=None if exists else branch,
            branch=branch if exists else None,
            base=base or "HEAD",
        )
    return path, False


def owner(path: Path) -> Path | None:
    """The main checkout when `path` is a worktree this module made (under its
    `.claude/worktrees/`, still registered with git), else None."""
    parent = path.parent
    if parent.name != PLACE.name or parent.parent.name != PLACE.parent.name:
        return None
    top = parent.parent.parent
    if not (top / ".git").exists() or not worktree.is_registered(top, path):
        return None
    return top


def remove(top: Path, path: Path, *, force: bool) -> None:
    """`git worktree remove` (the branch stays); refused when it has uncommitted work."""
    if path.is_dir() and not force:
        dirty = worktree.dirty_paths(path)
        if dirty:
            raise SandboxError(
                f"worktree {path} has uncommitted or untracked changes ({', '.join(dirty[:5])}): "
                "kept it; commit them, or add --force to the hook's command to discard them"
            )
    with worktree.repo_lock(top):
        if path.is_dir():
            worktree.remove(top, path, force=force)
        worktree.prune(top)

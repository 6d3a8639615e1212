"""Claude Code's settings file with our two hook entries merged in, or taken out again.

Ours are the command hooks whose command runs `sandbox hook claude-code worktree-create` (or
`-remove`); everything else in the file is the user's and stays as it is. Installing twice
changes nothing; installing with another ktrdr or KTRDR_HOME updates our entries in place.
A second WorktreeCreate hook is refused: Claude Code would run both, and each would make a
worktree. A file that is not JSON, or whose `hooks` is not shaped as Claude Code reads it, is
reported and never written. Writes are atomic (a symlinked settings file is written at its
target, so a dotfiles link survives) and refused when the file changed since it was read.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.directory import ktrdr_home
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.mcp import config as mcp_config

EVENTS = {"WorktreeCreate": "worktree-create", "WorktreeRemove": "worktree-remove"}
OURS = re.compile(r"(?:^|\s)sandbox\s+hook\s+claude-code\s+worktree-(?:create|remove)(?:\s|$)")
HOOK_TIMEOUT = 120  # seconds; a create takes a few, ten at once on 2 cores take longer
SCOPES = ("project", "local", "user")
PINNED_VARIABLES = ("KTRDR_HOME", "KTRDR_IMAGES")  # the tool runs hooks with its own env


@dataclass(frozen=True)
class SettingsChange:
    path: Path
    before: str | None  # None: there is no file yet
    after: str
    changed: bool

    def diff(self) -> str:
        old = (self.before or "").splitlines(keepends=True)
        new = self.after.splitlines(keepends=True) if self.changed else old
        name = str(self.path)
        return "".join(difflib.unified_diff(old, new, fromfile=name, tofile=name))


def settings_path(scope: str, *, cwd: Path) -> Path:
    """user: ~/.claude/settings.json ($CLAUDE_CONFIG_DIR); project: the checkout's
    .claude/settings.json; local: its .claude/settings.local.json (personal, not committed)."""
    if scope == "user":
        configured = settings.get("CLAUDE_CONFIG_DIR")
        base = Path(configured).expanduser() if configured else Path.home() / ".claude"
        return base / "settings.json"
    top = worktree.main_checkout(worktree.toplevel(cwd))
    return top / ".claude" / ("settings.local.json" if scope == "local" else "settings.json")


def hook_command(word: str) -> str:
    """The shell command of one hook: this ktrdr, absolute, with the variables that name this
    home and image set (Claude Code may run hooks with another environment)."""

    values = {name: settings.get(name) for name in PINNED_VARIABLES if settings.is_set(name)}
    if "KTRDR_HOME" in values:
        values["KTRDR_HOME"] = str(ktrdr_home())
    prefix = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    argv = [str(mcp_config.ktrdr_executable()), "sandbox", "hook", "claude-code", word]
    return " ".join([*prefix, shlex.join(argv)])


def plan_install(path: Path) -> SettingsChange:
    return _plan(path, _install)


def plan_uninstall(path: Path) -> SettingsChange:
    return _plan(path, _uninstall)


def apply(change: SettingsChange) -> None:
    """Write the change atomically, unless the file changed since it was planned."""
    if not change.changed:
        return
    target = change.path.resolve() if change.path.is_symlink() else change.path
    if _read(change.path) != change.before:
        raise SandboxError(
            f"{change.path} changed while it was being updated (Claude Code writes it too); "
            "nothing was written: run the command again"
        )
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, change.after, mode=mode)
    except OSError as e:
        raise SandboxError(f"cannot write {target}: {e.strerror or e}; nothing was changed") from e


def _plan(path: Path, edit: Callable[[dict[str, Any], Path], None]) -> SettingsChange:
    before = _read(path)
    data = _parse(path, before)
    original = json.loads(json.dumps(data))
    edit(data, path)
    if data == original:
        return SettingsChange(path, before, before or "", False)
    after = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return SettingsChange(path, before, after, True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise SandboxError(f"cannot read {path} ({e}); nothing was changed") from e


def _parse(path: Path, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SandboxError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): fix it "
            "first (Claude Code cannot read it either); nothing was changed"
        ) from e
    if not isinstance(data, dict):
        raise SandboxError(f"{path} is not a JSON object: fix it first; nothing was changed")
    return data


def _groups(data: dict[str, Any], event: str, path: Path) -> list[dict[str, Any]]:
    """`hooks.<event>` as Claude Code reads it (created empty when absent)."""
    hooks = data.setdefault("hooks", {})
    groups = hooks.setdefault(event, []) if isinstance(hooks, dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("hooks", []), list) for g in groups
    ):
        raise SandboxError(
            f"{path}: `hooks.{event}` is not a list of hook groups as Claude Code reads them; "
            "fix it by hand first; nothing was changed"
        )
    return groups


def _is_ours(hook: object) -> bool:
    return isinstance(hook, dict) and bool(OURS.search(str(hook.get("command", ""))))


def _install(data: dict[str, Any], path: Path) -> None:
    for event, word in EVENTS.items():
        groups = _groups(data, event, path)
        entry = {"type": "command", "command": hook_command(word), "timeout": HOOK_TIMEOUT}
        ours = [h for g in groups for h in g.get("hooks", []) if _is_ours(h)]
        if ours:
            ours[0].clear()
            ours[0].update(entry)
            for extra in ours[1:]:  # a duplicate of ours would run the hook twice
                _drop(groups, extra)
            continue
        others = [h for g in groups for h in g.get("hooks", [])]
        if event == "WorktreeCreate" and others:
            first = others[0]
            shown = str(first.get("command", "")) if isinstance(first, dict) else str(first)
            raise SandboxError(
                f"{path} already has a WorktreeCreate hook ({shown[:80]!r}): Claude Code would "
                "run both and each would make a worktree; remove that entry first (nothing was "
                "changed)"
            )
        groups.append({"hooks": [entry]})


def _uninstall(data: dict[str, Any], path: Path) -> None:
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return
    for event in [e for e in EVENTS if e in hooks]:
        groups = _groups(data, event, path)
        ours = [h for g in groups for h in g.get("hooks", []) if _is_ours(h)]
        for hook in ours:
            _drop(groups, hook)
        if ours and not groups:  # only what we emptied goes, never the user's own empty list
            del hooks[event]
            if not hooks:
                del data["hooks"]


def _drop(groups: list[dict[str, Any]], hook: dict[str, Any]) -> None:
    """Remove `hook` (this very dict), and its group when that held nothing else."""
    for index, group in enumerate(groups):
        members = group.get("hooks", [])
        if any(member is hook for member in members):
            group["hooks"] = [m for m in members if m is not hook]
            if not group["hooks"]:
                del groups[index]
            return

"""The instance's project MCP configuration, `.mcp.json` at its root (the file Claude Code reads
from a project's root): one server, `ktrdr-<instance id>`, that starts `ktrdr sandbox mcp`
pinned to the instance with this home's `KTRDR_HOME` (the entry `mcp --print-config` prints).

The user's own file is never clobbered:
- no `.mcp.json`: ours is written and `/.mcp.json` added to the repository's info/exclude, as
  `.env.sandbox` is, so it is neither a change to commit nor uncommitted work;
- a committed `.mcp.json`: our server is added beside the user's servers and the file marked
  skip-worktree in this worktree's index, so the addition never shows in `git status` and
  cannot be committed by accident; unpinning restores the committed bytes;
- an untracked `.mcp.json` of the user's (a setup script in a checkout): our server is added,
  the rest kept, nothing hidden;
- a file that is not a JSON object with an object `mcpServers`: left alone, a note says why.
Unpinning takes out only our server (and the file, when nothing else was in it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.agent_tools import git_files
from ktrdr.cli.sandbox.base.atomic import write_atomic
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.mcp.config import client_config

MCP_FILE = ".mcp.json"
EXCLUDE_PATTERN = "/.mcp.json"


@dataclass(frozen=True)
class PinResult:
    path: Path
    server: str  # its key in mcpServers
    action: str  # written | merged | unchanged | refused
    note: str | None = None


def server_entry(instance_id: str, root: Path) -> tuple[str, dict[str, Any]]:
    """(key, entry) of the pinned server, as `ktrdr sandbox mcp --print-config` has it."""

    ((key, entry),) = client_config(instance_id, cwd=root)["mcpServers"].items()
    return key, entry


def pin(root: Path, instance_id: str) -> PinResult:
    """Put the pinned server into `root/.mcp.json` (see the module docstring for how)."""
    key, entry = server_entry(instance_id, root)
    path = root / MCP_FILE
    if path.is_symlink():  # the worktree is the agent's: never write through its links
        return PinResult(path, key, "refused", f"{path} is a symbolic link: left as it is")
    if not path.exists():
        _write(path, {"mcpServers": {key: entry}})
        worktree.ensure_excluded(root, (EXCLUDE_PATTERN,))
        return PinResult(path, key, "written")
    data, problem = _load(path)
    if data is None:
        return PinResult(path, key, "refused", f"{problem}: left as it is, no pinned server")
    servers = data["mcpServers"]
    if servers.get(key) == entry:
        return PinResult(path, key, "unchanged")
    servers[key] = entry
    _write(path, data)
    if git_files.is_tracked(root, MCP_FILE):
        git_files.skip_worktree(root, MCP_FILE, on=True)
        return PinResult(path, key, "merged", "added beside the committed servers (skip-worktree)")
    return PinResult(path, key, "merged", "added beside the servers already in it")


def unpin(root: Path, instance_id: str) -> bool:
    """Take our server out of `root/.mcp.json`; True when the file changed."""
    key = f"ktrdr-{instance_id}"
    path = root / MCP_FILE
    if path.is_symlink() or not path.is_file():
        return False
    data, _ = _load(path)
    if data is None or key not in data["mcpServers"]:
        return False
    del data["mcpServers"][key]
    if git_files.is_tracked(root, MCP_FILE):
        git_files.skip_worktree(root, MCP_FILE, on=False)
        committed = git_files.committed_text(root, MCP_FILE)
        if committed is not None and _same_json(committed, data):
            git_files.restore(root, MCP_FILE)  # the committed bytes, not a reformatted copy
            return True
    elif not data["mcpServers"] and list(data) == ["mcpServers"]:
        path.unlink()  # only ours was in it
        return True
    _write(path, data)
    return True


def _load(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The file as a JSON object with an object `mcpServers` (added when missing), or None and
    why it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path} cannot be read ({e})"
    except json.JSONDecodeError as e:
        return None, f"{path} is not valid JSON (line {e.lineno}, column {e.colno})"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    servers = data.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        return None, f"{path}: `mcpServers` is not an object"
    return data, ""


def _same_json(text: str, data: dict[str, Any]) -> bool:
    """The committed text says what `data` says (an absent `mcpServers` reads as empty)."""
    try:
        committed = json.loads(text)
    except ValueError:
        return False
    if isinstance(committed, dict):
        committed.setdefault("mcpServers", {})
    return bool(committed == data)


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        write_atomic(path, json.dumps(data, indent=2) + "\n", mode=None)
    except OSError as e:
        raise SandboxError(f"cannot write {path}: {e.strerror or e}") from e

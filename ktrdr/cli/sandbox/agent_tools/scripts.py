"""`ktrdr sandbox hook setup` / `teardown`: for tools that make the worktree themselves and run
a script in it (Codex's setup and cleanup scripts, Conductor's setup and archive scripts,
Cursor's worktree setup, a script of your own).

Setup makes the current checkout an instance (as `init` does), pins the MCP server into it and
starts the stack in the background; run again, it changes nothing and reports the same. Teardown
destroys the instance the current directory belongs to (`destroy`'s rules: a clone keeps its
files, only `.env.sandbox` and our server go); with nothing to tear down it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ktrdr.cli.sandbox.agent_tools.worktree_hook import (
    Notify,
    Prepared,
    Removed,
    destroy_entry,
    entry_at,
    prepare,
)
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.provision.init_checkout import init_instance


@dataclass
class SetUp:
    prepared: Prepared
    created: bool  # False: it was an instance already (the run changed nothing)


def setup_here(cwd: Path, *, images: str | None, start_mode: str) -> SetUp:
    """The checkout holding `cwd` as an instance, pinned, its start launched (once)."""

    top = worktree.toplevel(cwd)
    entry = entry_at(top)
    created = entry is None
    if entry is None:
        init_instance(cwd=top, images=images)
        entry = entry_at(top)
        if entry is None:  # init registers or raises; a concurrent destroy could race it
            raise SandboxError(f"{top} is not registered after `init`: run the setup again")
    return SetUp(prepare(entry, start_mode=start_mode, notes=[]), created)


def teardown_here(cwd: Path, *, force: bool, on_wait: Notify) -> Removed:
    """Destroy the instance the checkout holding `cwd` is (nothing, with a note, when it is
    none: a second teardown changes nothing)."""
    try:
        top = worktree.toplevel(cwd)
    except SandboxError:  # not a checkout (any more): nothing of ours is here
        top = cwd
    entry = entry_at(top)
    if entry is None:
        return Removed(top, notes=[f"{top} is no instance of this home: nothing to tear down"])
    return destroy_entry(entry, force=force, on_wait=on_wait)

"""Instances made the way `create`/`init` make them: an env file and a registry entry, both
naming the same checkout, so `locate` finds the view in agreement with the record; and what a
`create` killed midway leaves (`interrupted_create`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import new_settings, render_env, slugify, write_env_file
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.home.shared_data import shared_root
from tests.support.git_repos import git
from tests.support.slots import TEST_SLOTS

# The instance of the `instance_dir` fixture (tests/conftest.py), as its tests name it.
SLOT = TEST_SLOTS[7]  # 97: a test slot, whose ports the user's sandboxes never hold
INSTANCE_ID = "ktrdr--feat-a"


def register_instance(
    root: Path,
    *,
    instance_id: str | None = None,
    slot: int,
    images: str | None = None,
    kind: registry.Kind = "clone",
    name: str | None = None,
    context: str | None = None,
    forward: int | None = None,
) -> Entry:
    """Write `root/.env.sandbox` and register it in the current KTRDR_HOME."""
    instance_id = instance_id or slugify(root.name)
    settings = new_settings(
        instance_id=instance_id,
        slot=slot,
        shared_dir=shared_root(),
        images=images,
        previous=None,
        checkout=root,
        context=context,
        forward=forward,
    )
    write_env_file(root, render_env(settings, command="test"))
    entry = Entry(
        instance_id=instance_id,
        slot=slot,
        path=str(root),
        kind=kind,
        branch=None,
        created_at=registry.now_iso(),
        name=name,
        context=context,
        forward=forward,
    )
    with registry.transaction() as entries:
        entries[instance_id] = entry
    return entry


def edit_view(root: Path, key: str, value: str) -> None:
    """Change (or add) one line of the instance's `.env.sandbox`, as an agent would."""
    path = root / ".env.sandbox"
    lines = path.read_text(encoding="utf-8").splitlines()
    replaced = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    if replaced == lines:
        replaced.append(f"{key}={value}")
    path.write_text("\n".join(replaced) + "\n", encoding="utf-8")


def dead_pid() -> int:
    """The pid of a process that has exited (no process has it now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def register(entry: Entry) -> None:
    """Put `entry` into the current home's registry as it is."""
    with registry.transaction() as entries:
        entries[entry.instance_id] = entry


def write_env(root: Path, instance_id: str, slot: int) -> Path:
    """`root/.env.sandbox` for `instance_id` on `slot`, without registering it."""
    settings = new_settings(
        instance_id=instance_id,
        slot=slot,
        shared_dir=shared_root(),
        images=None,
        previous=None,
        checkout=root,
    )
    return write_env_file(root, render_env(settings, command="test"))


def interrupted_create(repo: Path, name: str, *, env_file: bool = True) -> Entry:
    """What a `create` killed after `git worktree add` leaves: worktree, branch, dead claim."""
    path = repo.parent / f"{repo.name}--{name}"
    git(repo, "worktree", "add", "-q", "-b", name, str(path), "HEAD")
    instance_id = path.name
    if env_file:
        write_env(path, instance_id, 9)
    entry = Entry(
        instance_id=instance_id,
        slot=9,
        path=str(path),
        kind="worktree",
        branch=name,
        created_at=registry.now_iso(),
        state="creating",
        pid=dead_pid(),
        name=name,
        repo=str(repo),
    )
    register(entry)
    return entry

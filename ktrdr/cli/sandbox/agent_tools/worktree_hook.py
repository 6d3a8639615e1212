"""What Claude Code's WorktreeCreate and WorktreeRemove hooks do, given their requests.

Create: the instance is made by `create`'s own transaction (same naming rules, slot claim and
rollback), from the checkout the payload names, on the base commit it names (else HEAD, or the
HEAD of the instance the agent works in). Then the pinned MCP server goes into the worktree and
the stack starts in the background. A name already made into an instance of this repository
(a tool reopening a worktree by name) gives that instance's path again. Only the worktree and
the slot claim are part of the transaction: a server config or a start that cannot be made is
a note, because the path is what the tool needs, and `sandbox_up` can start the stack later.

Remove: the instance that owns the path is destroyed as `destroy` does it (slot kept claimed
until its containers are gone), after its background start is stopped; uncommitted work is a
refusal unless the hook runs with --force.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.agent_tools import background, naming, pin, plain_worktree
from ktrdr.cli.sandbox.agent_tools.background import StartInfo
from ktrdr.cli.sandbox.agent_tools.payload import CreateRequest
from ktrdr.cli.sandbox.agent_tools.pin import PinResult
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import ktrdr_home
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.instances.locate import from_entry
from ktrdr.cli.sandbox.lifecycle.destroy import destroy_instance
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.slots.ports import local_ports

Notify = Callable[[str], None]


@dataclass
class Prepared:
    """An instance ready for its agent: made (or found again), pinned, its start under way."""

    path: Path
    instance_id: str | None = None  # None: a plain worktree (no sandbox stack here)
    slot: int | None = None
    api_url: str | None = None
    reused: bool = False
    pin: PinResult | None = None
    start: StartInfo | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "instance_id": self.instance_id,
            "slot": self.slot,
            "api_url": self.api_url,
            # What is there, not what this run did: a second setup prints the same.
            "mcp_config": {"path": str(self.pin.path), "server": self.pin.server}
            if self.pin and self.pin.action != "refused"
            else None,
            "start": self.start.to_json() if self.start else None,
        }


@dataclass
class Removed:
    path: Path
    instance_id: str | None = None
    slot_released: bool = False
    worktree_removed: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "instance_id": self.instance_id,
            "slot_released": self.slot_released,
            "worktree_removed": self.worktree_removed,
            "notes": self.notes,
        }


def find_repo(candidates: list[Path]) -> Path:
    """The checkout (its top) of the first candidate inside one; a candidate that does not
    exist (a `base_path` for worktrees not made yet) counts by its nearest existing parent."""
    tried: list[str] = []
    for candidate in candidates:
        existing = next((p for p in (candidate, *candidate.parents) if p.is_dir()), None)
        if existing is None:
            continue
        try:
            return worktree.toplevel(existing)
        except SandboxError:
            tried.append(str(candidate))
    raise SandboxError(
        "no git checkout to make the worktree from (tried: "
        + (", ".join(tried) or "nothing")
        + "): run the agent tool inside your KTRDR clone"
    )


def create_worktree(
    request: CreateRequest,
    *,
    fallbacks: list[Path],
    images: str | None,
    start_mode: str,
) -> Prepared:
    here = find_repo([*request.repos, *fallbacks])
    top = worktree.main_checkout(here)
    name = naming.instance_name(request.name, top)
    notes = [] if name == request.name else [f"worktree name {request.name!r} became {name!r}"]
    if not plain_worktree.has_stack(here):
        path, reused = plain_worktree.create(top, name, base=request.base)
        notes.append(f"{top} has no sandbox stack: a plain worktree, no instance")
        return Prepared(path, reused=reused, notes=notes)
    entry = _reusable(top, name)
    if entry is None:
        entry = _create(name, here, top, request.base, images=images, notes=notes)
        reused = False
    else:
        notes.append(f"instance {entry.instance_id} exists for this name: reusing it")
        reused = True
    prepared = prepare(entry, start_mode=start_mode, notes=notes)
    prepared.reused = reused
    return prepared


def _reusable(top: Path, name: str) -> Entry | None:
    """The ready worktree instance this repository's `create NAME` made, if any."""
    path = (top.parent / f"{top.name}--{name}").resolve()
    return next(
        (
            e
            for e in registry.load().values()
            if e.kind == "worktree" and e.state == "ready" and e.root.resolve() == path
        ),
        None,
    )


def _create(
    name: str, here: Path, top: Path, base: str | None, *, images: str | None, notes: list[str]
) -> Entry:
    """`create NAME`; on an existing branch NAME (kept by an earlier remove) that branch is
    checked out again, as it is: the base would drop its commits."""

    branch = name if worktree.branch_exists(top, name) else None
    if branch is not None:
        ignored = " (the payload's base is ignored)" if base else ""
        notes.append(f"branch {name} exists: checked out as it is{ignored}")
    result = create_instance(
        name=name,
        cwd=here,
        branch=branch,
        base=None if branch else base,
        images=images,
    )
    notes += [f"skipped slot {s.slot}: {s.reason}" for s in result.skipped] + result.notes
    return registry.load()[result.instance_id]


def prepare(entry: Entry, *, start_mode: str, notes: list[str]) -> Prepared:
    """Pin the MCP server into the instance and start it as `start_mode` says. Neither can undo
    the instance: what fails is a note."""

    api_url = local_ports(entry.slot, entry.forward).urls()["api"]
    prepared = Prepared(entry.root, entry.instance_id, entry.slot, api_url, notes=notes)
    try:
        prepared.pin = pin.pin(entry.root, entry.instance_id)
        if prepared.pin.note:
            notes.append(f"{pin.MCP_FILE}: {prepared.pin.note}")
    except SandboxError as e:
        notes.append(f"no pinned MCP server: {e}")
    if start_mode != "background":
        prepared.start = StartInfo(start_mode, None, False)
        return prepared
    try:
        prepared.start = background.start(
            entry.instance_id, created_at=entry.created_at, cwd=entry.root
        )
    except SandboxError as e:
        notes.append(f"the stack was not started ({e}): start it with `ktrdr sandbox up`")
    return prepared


def remove_worktree(path: Path, *, force: bool, on_wait: Notify) -> Removed:
    """Destroy the instance registered at `path` (or remove the plain worktree made there)."""
    entry = entry_at(path)
    if entry is not None:
        return destroy_entry(entry, force=force, on_wait=on_wait)
    top = plain_worktree.owner(path)
    if top is not None:
        plain_worktree.remove(top, path, force=force)
        return Removed(path, worktree_removed=True)
    if not path.exists():
        return Removed(path, notes=[f"{path} is gone and no instance of this home is there"])

    raise SandboxError(
        f"{path} is not an instance of this home ({ktrdr_home()}) nor a worktree this hook made: "
        f"nothing removed; remove it yourself (`git worktree remove {path}`), or run the hook "
        "with the KTRDR_HOME that made it"
    )


def entry_at(path: Path) -> Entry | None:
    resolved = path.resolve()
    return next((e for e in registry.load().values() if e.root.resolve() == resolved), None)


def destroy_entry(entry: Entry, *, force: bool, on_wait: Notify) -> Removed:
    """Stop its background start, destroy it, take our server out of a clone's `.mcp.json`."""

    _refuse_uncommitted(entry, force=force)
    removed = Removed(entry.root, entry.instance_id)
    if background.stop(entry.instance_id):
        removed.notes.append("stopped its background start")
    result = destroy_instance(from_entry(entry), force=force, on_wait=on_wait)
    removed.notes += result.notes
    removed.slot_released, removed.worktree_removed = result.slot_released, result.worktree_removed
    if entry.kind == "clone" and pin.unpin(entry.root, entry.instance_id):
        removed.notes.append(f"took its server out of {entry.root / pin.MCP_FILE}")
    if result.slot_released:
        background.forget(entry.instance_id)
    return removed


def _refuse_uncommitted(entry: Entry, *, force: bool) -> None:
    """destroy's own check, worded for a hook (no --force to pass on a command line)."""
    if force or entry.kind != "worktree" or not (entry.root / ".git").exists():
        return
    dirty = worktree.dirty_paths(entry.root)
    if dirty:
        shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
        raise SandboxError(
            f"worktree {entry.root} has uncommitted or untracked changes ({shown}): kept it and "
            f"its stack; commit them and run `ktrdr sandbox destroy {entry.instance_id}`, or add "
            "--force to the hook's command to discard such changes"
        )

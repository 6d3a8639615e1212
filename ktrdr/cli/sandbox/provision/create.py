"""`ktrdr sandbox create`: a new worktree with its own slot and `.env.sandbox`.

Claim first (provision/claims.py), then `git worktree add` and the env file without the lock, then
register (the claim turns `ready`). Any failure before registering undoes what was made:
the worktree, the branch it created, the claim.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ktrdr.cli.limits import MAX_TEXT
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.interrupts import deferred_interrupt
from ktrdr.cli.sandbox.engine import handle as docker_engine
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.instance import (
    MAX_ID_LENGTH,
    instance_id_for,
    max_name_length,
    new_settings,
    render_env,
    slugify,
    validate_create_name,
    validate_images,
    write_env_file,
)
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.home.shared_data import shared_root
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.provision import claims
from ktrdr.cli.sandbox.provision.allocation import SkippedSlot
from ktrdr.cli.sandbox.slots.ports import SlotPorts, local_ports


@dataclass
class CreateResult:
    instance_id: str
    slot: int
    path: Path
    kind: str
    branch: str | None
    env_file: Path
    new_branch: bool = False
    skipped: list[SkippedSlot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C arrived after the instance was registered
    context: str | None = None
    forward: int | None = None

    @property
    def ports(self) -> SlotPorts:
        """The ports this machine uses (a remote instance's forwarded ones)."""
        return local_ports(self.slot, self.forward)

    def urls(self) -> dict[str, str]:
        return self.ports.urls()

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "slot": self.slot,
            "path": str(self.path),
            "kind": self.kind,
            "branch": self.branch,
            "new_branch": self.new_branch,
            "env_file": str(self.env_file),
            "engine": docker_engine.label(self.context),
            "ports": self.ports.all_ports(),
            "urls": self.urls(),
            "skipped_slots": [{"slot": s.slot, "reason": s.reason} for s in self.skipped],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Target:
    """Where a create will put the instance, checked before anything is made."""

    top: Path  # the main checkout
    path: Path
    instance_id: str
    branch: str | None  # an existing branch to check out, or None for a new branch NAME
    base: str | None


def create_instance(
    *,
    name: str,
    cwd: Path,
    slot: int | None = None,
    branch: str | None = None,
    base: str | None = None,
    images: str | None = None,
    context: str | None = None,
) -> CreateResult:
    """A new worktree `<parent>/<repo dir>--NAME` on branch NAME (or `branch`), slot, env file;
    the stack will run on the engine of `context` (None: the default engine)."""
    # The characters now; the length below (_check_target), where the real limit is known:
    # it depends on the checkout's name, and one message should give the one limit.
    validate_create_name(name, max_length=MAX_TEXT)
    engine = docker_engine.validate(context)
    context = engine.context
    notes = claims.reap_dead_claims()
    target = _check_target(name, cwd, branch=branch, base=base)
    images_mode = validate_images(images)
    claim = claims.claim_slot(
        engine=engine,
        instance_id=target.instance_id,
        slot=slot,
        path=target.path,
        kind="worktree",
        branch=branch or name,
        name=name,
        repo=target.top,
    )
    env_file, interrupted = _make_worktree(name, target, claim, images_mode, context)
    return CreateResult(
        context=context,
        forward=claim.forward,
        interrupted=interrupted,
        instance_id=target.instance_id,
        slot=claim.slot,
        path=target.path,
        kind="worktree",
        branch=branch or name,
        env_file=env_file,
        new_branch=branch is None,
        skipped=claim.skipped,
        notes=notes,
    )


def _check_target(name: str, cwd: Path, *, branch: str | None, base: str | None) -> _Target:
    """Refuse, before anything is made, what cannot work: a taken id or path, a branch that
    exists (or does not), a base that is no commit."""
    if branch is not None and base is not None:
        raise SandboxError("--branch and --base exclude each other: --base only seeds a new branch")
    here = worktree.toplevel(cwd)
    top = worktree.main_checkout(here)
    if top != here and branch is None and base is None:
        base = worktree.head_commit(here)  # from inside an instance: start where the user is
    check_name_fits(name, top)
    validate_create_name(name, max_length=max_name_length(top.name))
    path = top.parent / f"{top.name}--{name}"
    if path.parent != top.parent:  # unreachable after validation; never write outside it
        raise SandboxError(f"refusing instance path {path}: it leaves {top.parent}")
    instance_id = instance_id_for(path)
    entries = registry.load()
    existing = entries.get(instance_id)
    if existing is not None:  # before the branch checks, whose hints would lead nowhere
        raise SandboxError(_exists_message(name, existing, top=top, entries=entries))
    _check_branch(top, name, branch)
    if base is not None:
        worktree.check_commit(top, base)
    if os.path.lexists(path):
        raise SandboxError(f"{path} already exists: pick another name or remove it")
    return _Target(top, path, instance_id, branch, base)


def _check_branch(top: Path, name: str, branch: str | None) -> None:
    if branch is None:
        worktree.check_branch_name(top, name)
        if worktree.branch_exists(top, name):
            raise SandboxError(
                f"branch {name!r} already exists: pass --branch {name} to check it out in the "
                "new worktree, or pick another name"
            )
    elif not worktree.branch_exists(top, branch):
        raise SandboxError(f"branch {branch!r} does not exist: create it first or omit --branch")
    else:
        refuse_checked_out_branch(top, branch)


def _make_worktree(
    name: str, target: _Target, claim: claims.Claim, images_mode: str, context: str | None
) -> tuple[Path, bool]:
    """Worktree, env file, exclude lines, then registration; undone on any failure before
    registering. Returns the env file and whether a Ctrl-C arrived after registering."""
    settings = new_settings(
        instance_id=target.instance_id,
        slot=claim.slot,
        shared_dir=shared_root(),
        images=images_mode,
        previous=None,
        checkout=target.path,
        context=context,
        forward=claim.forward,
    )
    try:
        with worktree.repo_lock(target.top):
            worktree.add(
                target.top,
                target.path,
                new_branch=None if target.branch else name,
                branch=target.branch,
                base=target.base or "HEAD",
            )
            env_file = write_env_file(
                target.path, render_env(settings, command="ktrdr sandbox create")
            )
            worktree.ensure_excluded(target.top)
        # Registering is the point of no return: a Ctrl-C from here on must neither roll back
        # a registered instance nor hide that it was made.
        with deferred_interrupt() as late:
            claims.finish_claim(target.instance_id)
    except BaseException as error:
        # The path and the new branch did not exist before (checked above), so whatever is
        # there now was made by this create, even when `git worktree add` failed halfway.
        _rollback_create(
            error,
            top=target.top,
            path=target.path,
            new_branch=name if target.branch is None else None,
            instance_id=target.instance_id,
        )
        raise
    return env_file, late.interrupted


def check_name_fits(name: str, top: Path) -> None:
    """The length limit as this checkout makes it: ids are `<checkout>--NAME`, at most 63."""
    limit = max_name_length(top.name)
    if len(name) > limit:
        raise SandboxError(
            f"invalid instance name {name[:20]!r}…: {len(name)} characters, at most {limit} "
            f"in checkout {top.name!r} (the instance id {slugify(top.name)}--NAME has at most "
            f"{MAX_ID_LENGTH} characters); pick a shorter name"
        )


def _exists_message(name: str, existing: Entry, *, top: Path, entries: dict[str, Entry]) -> str:
    """Same name: where it is. Another name with the same id ('a.b' and 'a-b', 'UPPER' and
    'upper'): which one, why they collide, and a name that does not."""
    where = f"at {existing.path} (slot {existing.slot})"
    if existing.name in (None, name):
        return (
            f"instance {existing.instance_id} already exists {where}: cd there and "
            "`ktrdr sandbox up`, or pick another name"
        )
    free = _distinct_name(name, top, entries)
    return (
        f"instance name {name!r} collides with existing instance {existing.name!r} "
        f"({existing.instance_id}, {where}): ids are lowercase with runs of other characters "
        "as '-', so both map to the same id; "
        + (f"pick a distinct name such as {free!r}" if free else "pick a distinct name")
    )


def _distinct_name(name: str, top: Path, entries: dict[str, Entry]) -> str | None:
    limit = max_name_length(top.name)
    for n in range(2, 100):
        suffix = f"-{n}"
        candidate = name[: limit - len(suffix)].rstrip(".-") + suffix
        path = top.parent / f"{top.name}--{candidate}"
        if slugify(path.name) not in entries and not os.path.lexists(path):
            return candidate
    return None


def refuse_checked_out_branch(top: Path, branch: str) -> None:
    """git lets a branch live in one worktree at a time; say where it is before git's own
    `fatal:` does, with what to do instead."""
    holder = next((w for w in worktree.list_worktrees(top) if w.branch == branch), None)
    if holder is not None:
        raise SandboxError(
            f"branch {branch!r} is already checked out in {holder.path}, and a branch can be in "
            f"one worktree only: omit --branch (a new branch starts from it with --base {branch}) "
            "or pick another branch"
        )


def _rollback_create(
    error: BaseException,
    *,
    top: Path,
    path: Path,
    new_branch: str | None,
    instance_id: str,
) -> None:
    """Undo a failed create: worktree, branch it created, claim. Failures are added to the
    original error (when it is a SandboxError) rather than hiding it."""
    problems: list[str] = []
    try:
        with worktree.repo_lock(top):
            if path in [w.path for w in worktree.list_worktrees(top)]:
                worktree.remove(top, path, force=True)
            worktree.prune(top)
            if new_branch is not None and worktree.branch_exists(top, new_branch):
                worktree.delete_branch(top, new_branch)
    except SandboxError as e:
        problems.append(str(e))
    try:
        claims.drop_claim(instance_id)
    except SandboxError as e:
        problems.append(str(e))
    if problems and isinstance(error, SandboxError):
        error.message += "; rollback incomplete: " + "; ".join(problems)

"""`ktrdr sandbox init`: make the current checkout an instance (kind `clone`), keeping the
slot its `.env.sandbox` names when it is re-registered."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine import handle as docker_engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.lost_homes import refuse_lost_owner
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.instance import (
    IMAGE_MODES,
    instance_id_for,
    new_settings,
    read_env,
    render_env,
    write_env_file,
)
from ktrdr.cli.sandbox.home.locks import instance_lock
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.home.shared_data import shared_root
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.provision import claims
from ktrdr.cli.sandbox.provision.allocation import Allocation, BusyPort, allocate
from ktrdr.cli.sandbox.provision.create import CreateResult
from ktrdr.cli.sandbox.slots import machine_slots, slot_range
from ktrdr.cli.sandbox.slots.ports import FORWARD_INDEXES, SANDBOX_SLOTS
from ktrdr.cli.sandbox.stack import docker_access
from ktrdr.envfile import SANDBOX_ENV_FILENAME


def init_instance(
    *,
    cwd: Path,
    slot: int | None = None,
    images: str | None = None,
    context: str | None = None,
    adopting: str | None = None,
) -> CreateResult:
    """Make the current clone or worktree an instance (kind clone). Slot 0 only when asked. A
    re-init keeps the engine its env file names unless `context` is given. `adopting`: the id
    of the lost home whose stack `adopt` has just taken down (lost_homes)."""

    top = worktree.toplevel(cwd)
    env_path = top / SANDBOX_ENV_FILENAME
    previous = read_env(env_path) if env_path.is_file() else {}
    registered = _registered_at(top)
    if registered is not None:
        return restore_view(registered, previous, slot=slot, context=context)
    instance_id = instance_id_for(top)
    refuse_other_owner(top, previous)
    if context is None and previous.get("KTRDR_INSTANCE_ID") == instance_id:
        context = previous.get("KTRDR_DOCKER_CONTEXT") or None
    engine = docker_engine.validate(context)
    refuse_lost_owner(engine, top, dict(previous), adopting=adopting)
    with instance_lock(instance_id, command="ktrdr sandbox init"):
        return _init_locked(top, instance_id, previous, slot=slot, images=images, engine=engine)


def _registered_at(top: Path) -> Entry | None:
    resolved = top.resolve()
    return next((e for e in registry.load().values() if Path(e.path).resolve() == resolved), None)


def restore_view(
    entry: Entry, previous: Mapping[str, str], *, slot: int | None, context: str | None
) -> CreateResult:
    """`init` in a checkout this home already registered: rewrite its `.env.sandbox` from the
    home's record (an agent or a person may have edited it), keeping its secrets and image
    mode. The slot and engine stay the record's: moving them is destroy + create."""

    if entry.state != "ready":
        raise SandboxError(
            f"{entry.root} is instance {entry.instance_id}, which is {entry.state}: finish that "
            f"first (`ktrdr sandbox destroy {entry.instance_id}` or `ktrdr sandbox doctor --fix`)"
        )
    if slot is not None and slot != entry.slot:
        _refuse_move(entry, f"--slot {slot} (it has slot {entry.slot})")
    if context is not None and (context or None) != entry.context:
        used = entry.context or "the default engine"
        _refuse_move(entry, f"--context {context} (it uses {used})")
    # The view's secrets are the instance's own even when its id line was edited.
    kept = {**previous, "KTRDR_INSTANCE_ID": entry.instance_id}
    if kept.get("KTRDR_IMAGES", "").strip() not in (*IMAGE_MODES, ""):
        del kept["KTRDR_IMAGES"]  # an edited mode falls back to the default, not an error
    settings = new_settings(
        instance_id=entry.instance_id,
        slot=entry.slot,
        shared_dir=shared_root(),
        images=None,
        previous=kept,
        checkout=entry.root,
        context=entry.context,
        forward=entry.forward,
    )
    with instance_lock(entry.instance_id, command="ktrdr sandbox init"):
        env_path = write_env_file(entry.root, render_env(settings, command="ktrdr sandbox init"))
        worktree.ensure_excluded(entry.root)
    result = CreateResult(
        instance_id=entry.instance_id,
        slot=entry.slot,
        path=entry.root,
        kind=entry.kind,
        branch=entry.branch,
        env_file=env_path,
        context=entry.context,
        forward=entry.forward,
    )
    result.notes.append(f"already registered: rewrote {env_path.name} from this home's record")
    return result


def _refuse_move(entry: Entry, asked: str) -> None:
    raise SandboxError(
        f"{entry.root} is already instance {entry.instance_id}; {asked}: to move it, "
        f"`ktrdr sandbox destroy {entry.instance_id}` and create it again"
    )


def refuse_other_owner(top: Path, values: Mapping[str, str]) -> None:
    """An env file written by another KTRDR_HOME whose registry still holds this checkout is
    that home's instance: re-registering it here would take it over (new owner, new project,
    the old stack's ports)."""

    owner, owner_home = values.get("KTRDR_OWNER", ""), values.get("KTRDR_OWNER_HOME", "")
    if not owner or owner == home_id() or not owner_home:
        return
    try:
        other = json.loads((Path(owner_home) / "sandbox" / "instances.json").read_text())
        paths = {str(e.get("path")) for e in other.get("instances", {}).values()}
    except (OSError, ValueError, AttributeError):
        return  # that home is gone or unreadable: nobody else claims this checkout
    if str(top) in paths:
        raise SandboxError(
            f"{top} is an instance of KTRDR_HOME {owner_home}: run sandbox commands "
            f"for it with KTRDR_HOME={owner_home}, or destroy it there before `init` here"
        )


def _init_locked(
    top: Path,
    instance_id: str,
    previous: Mapping[str, str],
    *,
    slot: int | None,
    images: str | None,
    engine: Engine,
) -> CreateResult:
    env_path = top / SANDBOX_ENV_FILENAME
    branch = worktree.current_branch(top)
    context, remote = engine.context, engine.remote
    same_engine = (previous.get("KTRDR_DOCKER_CONTEXT") or None) == context
    kept = _slot_to_keep(engine, previous, instance_id) if slot is None and same_engine else None
    with machine_slots.allocation_lock():
        busy, _ = claims.busy_slots(engine, _slots_to_probe(slot, kept))
        if kept is not None and kept.running:
            busy = {**busy, kept.slot: []}  # its own containers hold those ports
        with registry.transaction() as entries:
            _refuse_registered(entries, top, instance_id)
            entries.pop(instance_id, None)
            on_engine = {k: e for k, e in entries.items() if e.context == context}
            allocation = _allocate_keeping(on_engine, instance_id, slot, kept, busy)
            forward = _forward_to_keep(entries, previous) if remote else None
            _write_env(top, previous, instance_id, allocation.slot, images, (context, forward))
            entries[instance_id] = Entry(
                instance_id=instance_id,
                slot=allocation.slot,
                path=str(top),
                kind="clone",
                branch=branch,
                created_at=registry.now_iso(),
                repo=str(top),
                context=context,
                forward=forward,
            )
        docker_access.docker().mark_slot(engine, instance_id, allocation.slot, replace=True)
    return CreateResult(
        context=context,
        forward=forward,
        instance_id=instance_id,
        slot=allocation.slot,
        path=top,
        kind="clone",
        branch=branch,
        env_file=env_path,
        skipped=allocation.skipped,
    )


def _refuse_registered(entries: dict[str, Entry], top: Path, instance_id: str) -> None:
    existing = entries.get(instance_id)
    if existing is not None and not existing.is_dead_claim() and existing.path != str(top):
        raise SandboxError(  # the id is the directory's name: two checkouts named alike
            f"instance id {instance_id} is taken by {existing.path} (slot {existing.slot}): an "
            f"id is its directory's name; rename {top}, or destroy that instance first"
        )
    if existing is not None and not existing.is_dead_claim():
        raise SandboxError(
            f"{top} is already registered as instance {instance_id} "
            f"(slot {existing.slot}); see `ktrdr sandbox status`"
        )
    same_path = [e for e in entries.values() if e.path == str(top) and not e.is_dead_claim()]
    if same_path:
        raise SandboxError(f"{top} is already registered as {same_path[0].instance_id}")


def _write_env(
    top: Path,
    previous: Mapping[str, str],
    instance_id: str,
    slot: int,
    images: str | None,
    engine: tuple[str | None, int | None],
) -> None:
    """The env file (secrets kept from an earlier one) and the exclude lines, or neither;
    `engine` is the Docker context and forward block."""
    context, forward = engine
    settings = new_settings(
        instance_id=instance_id,
        slot=slot,
        shared_dir=shared_root(),
        images=images,
        previous=previous,
        checkout=top,
        context=context,
        forward=forward,
    )
    env_path = write_env_file(top, render_env(settings, command="ktrdr sandbox init"))
    try:
        worktree.ensure_excluded(top)
    except BaseException:
        env_path.unlink(missing_ok=True)
        raise


def _forward_to_keep(entries: Mapping[str, Entry], previous: Mapping[str, str]) -> int:
    """A re-init keeps its block of forward ports (its URLs stay) unless another holds it."""
    text = previous.get("KTRDR_FORWARD_INDEX", "")
    taken = {e.forward for e in entries.values()}
    if text.isdigit() and int(text) in FORWARD_INDEXES and int(text) not in taken:
        return int(text)
    return claims.free_forward_index(entries.values())


@dataclass(frozen=True)
class _KeptSlot:
    slot: int
    running: bool  # this instance's own containers hold the slot's ports


def _slot_to_keep(engine: Engine, values: Mapping[str, str], instance_id: str) -> _KeptSlot | None:
    """Re-`init` of an instance whose entry was lost (registry deleted, other KTRDR_HOME): keep
    the slot its `.env.sandbox` names, above all while its stack runs on those ports."""
    text = values.get("KTRDR_SLOT", "")
    if values.get("KTRDR_INSTANCE_ID") != instance_id or not text.isdigit():
        return None
    if int(text) not in SANDBOX_SLOTS:
        return None
    try:
        running = any(c.state == "running" for c in docker_access.docker().ps(engine, instance_id))
    except SandboxError:  # no engine: nothing runs
        running = False
    return _KeptSlot(int(text), running)


def _slots_to_probe(slot: int | None, kept: _KeptSlot | None) -> list[int]:
    """The requested slot, else the machine's range plus a kept slot outside it."""
    if slot is not None:
        return [slot]
    slots = list(slot_range.configured())
    return [*slots, kept.slot] if kept is not None and kept.slot not in slots else slots


def _allocate_keeping(
    entries: dict[str, Entry],
    instance_id: str,
    slot: int | None,
    kept: _KeptSlot | None,
    busy: dict[int, list[BusyPort]],
) -> Allocation:
    if kept is not None:
        holder = next((e for e in entries.values() if e.slot == kept.slot), None)
        if holder is None and not busy.get(kept.slot):
            return allocate(entries, instance_id=instance_id, requested=kept.slot, busy=busy)
        if kept.running:
            taken_by = holder.instance_id if holder else busy[kept.slot][0].describe()
            raise SandboxError(
                f"this instance's stack runs on slot {kept.slot}, now taken by {taken_by}: "
                "`ktrdr sandbox down` here first, then `ktrdr sandbox init` takes a free slot"
            )
    return allocate(entries, instance_id=instance_id, requested=slot, busy=busy)

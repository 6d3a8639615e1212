"""Slot claims: how `create` and `init` take a slot without colliding, and how a killed
create is undone.

A claim is made under the machine-wide allocation lock and the registry lock: a `creating`
entry with our pid, plus a labelled marker volume on the engine so other homes skip the slot.
A killed create leaves a claim with a dead pid; the next create (or `doctor --fix`) reaps it
in the order it was made: take it over, undo its worktree and branch, then drop the record.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.proc import run
from ktrdr.cli.sandbox.engine import handle as docker_engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.provision.allocation import (
    BusyPort,
    SkippedSlot,
    allocate,
    busy_ports,
    port_in_use,
    probe_slots,
)
from ktrdr.cli.sandbox.slots import machine_slots, slot_range
from ktrdr.cli.sandbox.slots.ports import (
    FORWARD_BASE,
    FORWARD_BLOCK,
    FORWARD_INDEXES,
    MAIN_SLOT,
    forward_ports,
    ports_for_slot,
)
from ktrdr.cli.sandbox.stack import docker_access


@dataclass
class Claim:
    slot: int
    skipped: list[SkippedSlot]
    forward: int | None = None  # a remote instance's block of local forward ports


def reap_dead_claims() -> list[str]:
    """Undo what killed creates made (worktree, new branch), then drop their claims, so a
    reclaimed slot or name never leaves an orphan behind. One note per claim reaped."""
    return [
        f"cleaned up after an interrupted create of {instance_id}"
        + (f": {'; '.join(done)}" if done else "")
        for instance_id, done in reap_dead_claims_by_id().items()
    ]


def reap_dead_claims_by_id() -> dict[str, list[str]]:
    """instance id -> what was undone, for every dead claim reaped (also `doctor --fix`).

    Record, undo, then drop: each dead claim is first taken over (our pid, a fresh stamp) so no
    other process reaps it at the same time, and the record goes only after the undo. A kill
    in between leaves a claim with a dead pid again, which the next create reaps."""
    if not any(e.is_dead_claim() for e in registry.load().values()):
        return {}  # the common case: no lock, no write
    with registry.transaction() as entries:
        taken: list[Entry] = []
        for entry in entries.values():
            if entry.is_dead_claim():
                entry.pid, entry.created_at = os.getpid(), registry.now_iso()
                taken.append(Entry(**entry.to_json()))
    reaped: dict[str, list[str]] = {}
    for entry in taken:
        reaped[entry.instance_id] = undo_interrupted_create(entry)
        drop_claim(entry.instance_id)
    return reaped


def drop_claim(instance_id: str) -> None:
    """Drop a `creating` claim this process holds (a create it made or a dead one it took)."""
    with registry.transaction() as entries:
        entry = entries.get(instance_id)
        dropped = entry is not None and entry.state == "creating" and entry.pid == os.getpid()
        if dropped:
            del entries[instance_id]
    if dropped and entry is not None:
        engine = docker_engine.recorded(entry.context, forward=entry.forward)
        docker_access.docker().unmark_slot(engine, instance_id)


def undo_interrupted_create(entry: Entry) -> list[str]:
    """Remove what a killed create made: its worktree (if git registered it under the claim's
    repo) and its branch (safe delete). The caller drops the entry."""
    done: list[str] = []
    repo = Path(entry.repo) if entry.repo else None
    if repo is None or not repo.is_dir() or entry.kind != "worktree":
        return done
    path = entry.root
    with worktree.repo_lock(repo):
        if path.exists() and worktree.is_registered(repo, path):
            removed = run(
                ["git", "-C", repo, "worktree", "remove", "-f", "-f", "--", path],
                timeout=120,
                check=False,
            )
            if removed.returncode != 0:
                # Killed inside `git worktree add`: git registered the path but the checkout
                # (its .git file) is incomplete, so git refuses it. The path did not exist
                # before the claim (create refuses existing paths): all of it is that create's.
                shutil.rmtree(path)
                # `git worktree add` locks the entry while it initializes; prune skips those.
                run(["git", "-C", repo, "worktree", "unlock", "--", path], timeout=60, check=False)
            done.append(f"worktree {path} removed")
        elif path.is_dir() and not any(p.name != ".git" for p in path.iterdir()):
            shutil.rmtree(path)  # an empty checkout git never registered: nothing of the user's
            done.append(f"empty directory {path} removed")
        elif path.exists():
            done.append(f"{path} kept: not a worktree of {repo}, remove it yourself")
        worktree.prune(repo)
    if entry.branch and entry.branch == entry.name:
        deleted = run(
            ["git", "-C", repo, "branch", "-d", "--", entry.branch], timeout=60, check=False
        )
        if deleted.returncode == 0:
            done.append(f"branch {entry.branch} deleted (it had no unmerged commits)")
    return done


def refuse_stale_volumes(instance_id: str, left: list[str]) -> None:
    """Volumes of an earlier instance with this id (a destroy that could not finish, a lost
    registry) would be adopted by the new stack, and PostgreSQL keeps the old password."""
    if left:
        raise SandboxError(
            f"volumes of an earlier instance {instance_id} are still on the engine "
            f"({', '.join(left[:3])}): `ktrdr sandbox doctor --fix` removes them once nothing "
            "uses them, or pick another name"
        )


def busy_slots(
    engine: Engine, slots: list[int] | range, *, instance_id: str = ""
) -> tuple[dict[int, list[BusyPort]], list[str]]:
    """Busy ports per slot (probed here, or on a remote engine what its containers publish),
    plus the slots another home's stacks hold on `engine`: the registry is per home,
    the ports are per engine. Also this home's volumes already labelled `instance_id` (one
    engine query answers both)."""
    if engine.remote:  # a remote engine must answer: its ports cannot be probed from here
        docker_access.docker().ensure_engine(engine)
        published = docker_access.docker().published_ports(engine)
        busy = {slot: busy_ports(slot, probe=published.__contains__) for slot in slots}
    else:
        busy = probe_slots(slots)
    facts = docker_access.docker().slot_facts(engine, instance_id)
    for slot, holder in facts.other_homes.items():
        if slot in busy and not busy[slot]:
            api = ports_for_slot(slot).api
            if slot in facts.claimed_only:  # created, never started: nothing runs there yet
                busy[slot] = [BusyPort(api, "api", f"{holder} (not started)", state="claimed")]
            else:
                busy[slot] = [BusyPort(api, "api", f"{holder} (its stack is on this engine)")]
    return busy, facts.own_volumes


def claim_slot(
    *,
    instance_id: str,
    slot: int | None,
    path: Path,
    kind: registry.Kind,
    branch: str | None,
    name: str | None,
    repo: Path | None,
    engine: Engine,
) -> Claim:
    """Take a slot on `engine` (slots are per engine) and, for a remote engine, a block of
    local forward ports; recorded as a `creating` entry plus a marker on the engine."""
    context, remote = engine.context, engine.remote
    with machine_slots.allocation_lock():
        wanted = [slot] if slot is not None else slot_range.configured()
        busy, stale = busy_slots(engine, wanted, instance_id=instance_id)
        refuse_stale_volumes(instance_id, stale)
        with registry.transaction() as entries:
            # Claims that died since reap_dead_claims() keep their slots until the next create
            # (or doctor) undoes them: dropping them here would forget their worktrees.
            _refuse_registered(entries, instance_id, path)
            same_engine = {k: e for k, e in entries.items() if e.context == context}
            allocation = allocate(same_engine, instance_id=instance_id, requested=slot, busy=busy)
            forward = free_forward_index(entries.values()) if remote else None
            entries[instance_id] = Entry(
                instance_id=instance_id,
                slot=allocation.slot,
                path=str(path),
                kind=kind,
                branch=branch,
                created_at=registry.now_iso(),
                state="creating",
                pid=os.getpid(),
                name=name,
                repo=str(repo) if repo else None,
                context=context,
                forward=forward,
            )
        docker_access.docker().mark_slot(engine, instance_id, allocation.slot)
    return Claim(allocation.slot, allocation.skipped, forward)


def _refuse_registered(entries: dict[str, Entry], instance_id: str, path: Path) -> None:
    existing = entries.get(instance_id)
    if existing is not None:
        raise SandboxError(
            f"instance {instance_id} is already registered (slot {existing.slot}, "
            f"{existing.path}); see `ktrdr sandbox status {instance_id}`"
        )
    same_path = [e for e in entries.values() if e.path == str(path)]
    if same_path:
        raise SandboxError(f"{path} is already registered as instance {same_path[0].instance_id}")


def free_forward_index(entries: Iterable[Entry]) -> int:
    """The lowest block of local forward ports no entry of this home holds and no program on
    this machine listens in (another home's forwards included)."""
    taken = {e.forward for e in entries if e.forward}
    for index in FORWARD_INDEXES:
        if index in taken:
            continue
        local = forward_ports(index, MAIN_SLOT).all_ports().values()
        if not any(port_in_use(port) for port in local):
            return index
    raise SandboxError(
        "no free block of local ports for SSH forwards (ports "
        f"{FORWARD_BASE}..{FORWARD_BASE + FORWARD_BLOCK * FORWARD_INDEXES.stop}): destroy "
        "remote instances you no longer need"
    )


def finish_claim(instance_id: str) -> None:
    with registry.transaction() as entries:
        entry = entries.get(instance_id)
        if entry is None or entry.state != "creating" or entry.pid != os.getpid():
            raise SandboxError(
                f"the slot claim of {instance_id} was lost while creating it (removed by "
                "another command?); retry"
            )
        entry.state = "ready"
        entry.pid = None

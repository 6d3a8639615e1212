"""Instance transactions: create, init, destroy, prune; and the read-only list and status.

Create claims its slot before doing any work, so concurrent creates never collide and a crash
leaves nothing unrecoverable:
  1. under the registry lock: re-check the id, drop `creating` claims whose process is dead,
     allocate a slot and record {state: "creating", pid} — the slot is now taken;
  2. without the lock: `git worktree add`, write `.env.sandbox`, update info/exclude;
  3. under the lock: flip the claim to `ready` (registration is the last step).
Any failure in 2-3 undoes what was done (worktree removed, the branch it created deleted, claim
released). A process killed mid-create leaves a `creating` claim with a dead pid: `list` shows
it `stale`, `prune` removes it and the next `create` reclaims its slot.

A killed create is reaped in the same order it was made: the dead claim is taken over (our pid
recorded), its worktree and branch are undone, and only then is the record dropped, so a kill at
any point leaves every worktree and branch either recorded or removed.

Destroy keeps the slot claimed (state `destroying`) until the instance's containers and volumes
are confirmed gone, and refuses before changing anything when the engine cannot be asked (no
docker CLI, engine down or hung): unknown is never taken for "no containers". Only on a machine
with neither a docker CLI nor an engine socket can there be no containers at all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ktrdr.cli.sandbox import machine_slots, registry, worktree
from ktrdr.cli.sandbox.allocation import Allocation, BusyPort, SkippedSlot, allocate, probe_slots
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.home import unused_evidence_path
from ktrdr.cli.sandbox.instance import (
    MAX_ID_LENGTH,
    instance_id_for,
    max_name_length,
    new_settings,
    read_env,
    render_env,
    slugify,
    validate_create_name,
    validate_images,
    write_env_file,
)
from ktrdr.cli.sandbox.interrupts import deferred_interrupt
from ktrdr.cli.sandbox.listing import (
    containers_snapshot,
    containers_snapshot_and_why,
    entry_status,
    short_lived,
    stale_reason,
)
from ktrdr.cli.sandbox.listing import engine_module as _engine
from ktrdr.cli.sandbox.locate import Instance, from_entry, locate
from ktrdr.cli.sandbox.ports import SANDBOX_SLOTS, ports_for_slot
from ktrdr.cli.sandbox.proc import run
from ktrdr.cli.sandbox.registry import Entry
from ktrdr.cli.sandbox.shared_data import shared_root
from ktrdr.envfile import SANDBOX_ENV_FILENAME
from ktrdr.errors import Interrupted

if TYPE_CHECKING:
    from ktrdr.cli.sandbox.gate_probes import GateProbes


def _ownership() -> ModuleType:
    """ownership.py, imported when the engine is asked (a stand-in replaces it in tests)."""
    from ktrdr.cli.sandbox import ownership

    return ownership


def _compose() -> ModuleType:
    """compose.py, imported when a stack is taken down (a stand-in replaces it in tests)."""
    from ktrdr.cli.sandbox import compose

    return compose


# --- create / init -----------------------------------------------------------------------


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

    def urls(self) -> dict[str, str]:
        return ports_for_slot(self.slot).urls()

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "slot": self.slot,
            "path": str(self.path),
            "kind": self.kind,
            "branch": self.branch,
            "new_branch": self.new_branch,
            "env_file": str(self.env_file),
            "ports": ports_for_slot(self.slot).all_ports(),
            "urls": self.urls(),
            "skipped_slots": [{"slot": s.slot, "reason": s.reason} for s in self.skipped],
            "notes": self.notes,
        }


def create_instance(
    *,
    name: str,
    cwd: Path,
    slot: int | None = None,
    branch: str | None = None,
    base: str | None = None,
    images: str | None = None,
) -> CreateResult:
    """A new worktree `<parent>/<repo dir>--NAME` on branch NAME (or `branch`), slot, env file."""
    validate_create_name(name)
    notes = reap_dead_claims()
    if branch is not None and base is not None:
        raise SandboxError("--branch and --base exclude each other: --base only seeds a new branch")
    here = worktree.toplevel(cwd)
    top = worktree.main_checkout(here)
    if top != here and branch is None and base is None:
        base = worktree.head_commit(here)  # from inside an instance: start where the user is
    check_name_fits(name, top)
    path = top.parent / f"{top.name}--{name}"
    if path.parent != top.parent:  # unreachable after validation; never write outside it
        raise SandboxError(f"refusing instance path {path}: it leaves {top.parent}")
    instance_id = instance_id_for(path)
    entries = registry.load()
    existing = entries.get(instance_id)
    if existing is not None:  # before the branch checks, whose hints would lead nowhere
        raise SandboxError(_exists_message(name, existing, top=top, entries=entries))
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
    if base is not None:
        worktree.check_commit(top, base)
    if os.path.lexists(path):
        raise SandboxError(f"{path} already exists: pick another name or remove it")
    refuse_stale_volumes(instance_id)

    images_mode = validate_images(images)
    claim = _claim(
        instance_id=instance_id,
        slot=slot,
        path=path,
        kind="worktree",
        branch=branch or name,
        name=name,
        repo=top,
    )
    settings = new_settings(
        instance_id=instance_id,
        slot=claim.slot,
        shared_dir=shared_root(),
        images=images_mode,
        existing=None,
        checkout=path,
    )
    try:
        with worktree.repo_lock(top):
            worktree.add(
                top, path, new_branch=None if branch else name, branch=branch, base=base or "HEAD"
            )
            env_file = write_env_file(path, render_env(settings, command="ktrdr sandbox create"))
            worktree.ensure_excluded(top)
        # Registering is the point of no return: a Ctrl-C from here on must neither roll back
        # a registered instance nor hide that it was made.
        with deferred_interrupt() as late:
            _finish_claim(instance_id)
    except BaseException as error:
        # `path` and the new branch did not exist before (checked above), so whatever is
        # there now was made by this create, even when `git worktree add` failed halfway.
        _rollback_create(
            error,
            top=top,
            path=path,
            new_branch=name if branch is None else None,
            instance_id=instance_id,
        )
        raise
    return CreateResult(
        interrupted=late.interrupted,
        instance_id=instance_id,
        slot=claim.slot,
        path=path,
        kind="worktree",
        branch=branch or name,
        env_file=env_file,
        new_branch=branch is None,
        skipped=claim.skipped,
        notes=notes,
    )


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


@dataclass
class _Claim:
    slot: int
    skipped: list[SkippedSlot]


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
        _drop_claim(entry.instance_id)
    return reaped


def _drop_claim(instance_id: str) -> None:
    """Drop a `creating` claim this process holds (a create it made or a dead one it took)."""
    with registry.transaction() as entries:
        entry = entries.get(instance_id)
        dropped = entry is not None and entry.state == "creating" and entry.pid == os.getpid()
        if dropped:
            del entries[instance_id]
    if dropped:
        _ownership().unmark_slot(instance_id)


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


def refuse_stale_volumes(instance_id: str) -> None:
    """Volumes of an earlier instance with this id (a destroy that could not finish, a lost
    registry) would be adopted by the new stack, and PostgreSQL keeps the old password."""
    left = _ownership().own_volumes(instance_id)
    if left:
        raise SandboxError(
            f"volumes of an earlier instance {instance_id} are still on the engine "
            f"({', '.join(left[:3])}): `ktrdr sandbox doctor --fix` removes them once nothing "
            "uses them, or pick another name"
        )


def busy_slots(slots: list[int] | range) -> dict[int, list[BusyPort]]:
    """Busy ports per slot (probed), plus the slots another home's stacks hold on this engine:
    the registry is per home, the ports are per machine."""
    busy = probe_slots(slots)
    for slot, holder in _ownership().slots_of_other_homes().items():
        if slot in busy and not busy[slot]:
            api = ports_for_slot(slot).api
            busy[slot] = [BusyPort(api, "api", f"{holder} (its stack is on this engine)")]
    return busy


def _claim(
    *,
    instance_id: str,
    slot: int | None,
    path: Path,
    kind: registry.Kind,
    branch: str | None,
    name: str | None,
    repo: Path | None,
) -> _Claim:
    with machine_slots.allocation_lock():
        busy = busy_slots([slot] if slot is not None else SANDBOX_SLOTS)
        with registry.transaction() as entries:
            # Claims that died since reap_dead_claims() keep their slots until the next create
            # (or doctor) undoes them: dropping them here would forget their worktrees.
            existing = entries.get(instance_id)
            if existing is not None:
                raise SandboxError(
                    f"instance {instance_id} is already registered (slot {existing.slot}, "
                    f"{existing.path}); see `ktrdr sandbox status {instance_id}`"
                )
            same_path = [e for e in entries.values() if e.path == str(path)]
            if same_path:
                raise SandboxError(
                    f"{path} is already registered as instance {same_path[0].instance_id}"
                )
            allocation = allocate(entries, instance_id=instance_id, requested=slot, busy=busy)
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
            )
        _ownership().mark_slot(instance_id, allocation.slot)
    return _Claim(allocation.slot, allocation.skipped)


def _finish_claim(instance_id: str) -> None:
    with registry.transaction() as entries:
        entry = entries.get(instance_id)
        if entry is None or entry.state != "creating" or entry.pid != os.getpid():
            raise SandboxError(
                f"the slot claim of {instance_id} was lost while creating it (removed by "
                "another command?); retry"
            )
        entry.state = "ready"
        entry.pid = None


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
        _drop_claim(instance_id)
    except SandboxError as e:
        problems.append(str(e))
    if problems and isinstance(error, SandboxError):
        error.message += "; rollback incomplete: " + "; ".join(problems)


def init_instance(*, cwd: Path, slot: int | None = None, images: str | None = None) -> CreateResult:
    """Make the current clone or worktree an instance (kind clone). Slot 0 only when asked."""
    from ktrdr.cli.sandbox.locks import instance_lock

    top = worktree.toplevel(cwd)
    instance_id = instance_id_for(top)
    env_path = top / SANDBOX_ENV_FILENAME
    refuse_other_owner(env_path)
    with instance_lock(instance_id, command="ktrdr sandbox init"):
        return _init_locked(top, instance_id, env_path, slot=slot, images=images)


def refuse_other_owner(env_path: Path) -> None:
    """An env file written by another KTRDR_HOME whose registry still holds this checkout is
    that home's instance: re-registering it here would take it over (new owner, new project,
    the old stack's ports)."""
    import json

    from ktrdr.cli.sandbox.home import home_id

    if not env_path.is_file():
        return
    values = read_env(env_path)
    owner, owner_home = values.get("KTRDR_OWNER", ""), values.get("KTRDR_OWNER_HOME", "")
    if not owner or owner == home_id() or not owner_home:
        return
    try:
        other = json.loads((Path(owner_home) / "sandbox" / "instances.json").read_text())
        paths = {str(e.get("path")) for e in other.get("instances", {}).values()}
    except (OSError, ValueError, AttributeError):
        return  # that home is gone or unreadable: nobody else claims this checkout
    if str(env_path.parent) in paths:
        raise SandboxError(
            f"{env_path.parent} is an instance of KTRDR_HOME {owner_home}: run sandbox commands "
            f"for it with KTRDR_HOME={owner_home}, or destroy it there before `init` here"
        )


def _init_locked(
    top: Path, instance_id: str, env_path: Path, *, slot: int | None, images: str | None
) -> CreateResult:
    branch = worktree.current_branch(top)
    kept = _slot_to_keep(env_path, instance_id) if slot is None else None
    with machine_slots.allocation_lock():
        busy = busy_slots([slot] if slot is not None else SANDBOX_SLOTS)
        if kept is not None and kept.running:
            busy = {**busy, kept.slot: []}  # its own containers hold those ports
        with registry.transaction() as entries:
            existing = entries.get(instance_id)
            if existing is not None and not existing.is_dead_claim():
                raise SandboxError(
                    f"{top} is already registered as instance {instance_id} "
                    f"(slot {existing.slot}); see `ktrdr sandbox status`"
                )
            same_path = [
                e for e in entries.values() if e.path == str(top) and not e.is_dead_claim()
            ]
            if same_path:
                raise SandboxError(f"{top} is already registered as {same_path[0].instance_id}")
            entries.pop(instance_id, None)
            allocation = _allocate_keeping(entries, instance_id, slot, kept, busy)
            settings = new_settings(
                instance_id=instance_id,
                slot=allocation.slot,
                shared_dir=shared_root(),
                images=images,
                existing=env_path,
                checkout=top,
            )
            write_env_file(top, render_env(settings, command="ktrdr sandbox init"))
            try:
                worktree.ensure_excluded(top)
            except BaseException:
                env_path.unlink(missing_ok=True)
                raise
            entries[instance_id] = Entry(
                instance_id=instance_id,
                slot=allocation.slot,
                path=str(top),
                kind="clone",
                branch=branch,
                created_at=registry.now_iso(),
                repo=str(top),
            )
        _ownership().mark_slot(instance_id, allocation.slot, replace=True)
    return CreateResult(
        instance_id=instance_id,
        slot=allocation.slot,
        path=top,
        kind="clone",
        branch=branch,
        env_file=env_path,
        skipped=allocation.skipped,
    )


@dataclass(frozen=True)
class _KeptSlot:
    slot: int
    running: bool  # this instance's own containers hold the slot's ports


def _slot_to_keep(env_path: Path, instance_id: str) -> _KeptSlot | None:
    """Re-`init` of an instance whose entry was lost (registry deleted, other KTRDR_HOME): keep
    the slot its `.env.sandbox` names, above all while its stack runs on those ports."""
    if not env_path.is_file():
        return None
    values = read_env(env_path)
    text = values.get("KTRDR_SLOT", "")
    if values.get("KTRDR_INSTANCE_ID") != instance_id or not text.isdigit():
        return None
    if int(text) not in SANDBOX_SLOTS:
        return None
    try:
        running = any(c.state == "running" for c in _engine().ps(instance_id))
    except SandboxError:  # no engine: nothing runs
        running = False
    return _KeptSlot(int(text), running)


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


# --- list / status -------------------------------------------------------------------------


@dataclass
class InstanceStatus:
    instance_id: str
    slot: int
    path: Path
    registered: bool
    status: str
    kind: str | None = None
    branch: str | None = None
    created_at: str | None = None
    stale_reason: str | None = None
    containers_total: int | None = None
    containers_running: int | None = None
    containers_healthy: int | None = None
    reasons: list[str] = field(default_factory=list)  # why not `running`, observed just now
    live: dict[str, Any] | None = None  # API, workers (health.observe), last gate

    def to_json(self) -> dict[str, Any]:
        ports = ports_for_slot(self.slot)
        return {
            "instance_id": self.instance_id,
            "slot": self.slot,
            "path": str(self.path),
            "registered": self.registered,
            "status": self.status,
            "kind": self.kind,
            "branch": self.branch,
            "created_at": self.created_at,
            "stale_reason": self.stale_reason,
            "reasons": self.reasons,
            "ports": ports.all_ports(),
            "urls": ports.urls(),
            "containers": {
                "total": self.containers_total,
                "running": self.containers_running,
                "healthy": self.containers_healthy,
            },
            **(self.live or {}),
        }


def instance_status(
    name: str | None, *, cwd: Path, probes: GateProbes | None = None
) -> InstanceStatus:
    """Identity, slot and Docker state of one instance (by name, or the one containing cwd).
    An unregistered `.env.sandbox` still reports what the file says."""
    instance = locate(name, cwd, name_hint="pass NAME, or see `ktrdr sandbox list`")
    if instance.entry is None:
        return _unregistered_status(instance)
    entry = instance.entry
    snapshot, engine_problem = containers_snapshot_and_why()
    result = InstanceStatus(
        instance_id=entry.instance_id,
        slot=entry.slot,
        path=entry.root,
        registered=True,
        status=entry_status(entry, snapshot),
        kind=entry.kind,
        branch=entry.branch,
        created_at=entry.created_at,
        stale_reason=stale_reason(entry),
    )
    if result.status == "unknown" and engine_problem:
        result.reasons = [engine_problem]
    if result.status in ("running", "starting", "degraded", "paused"):
        _observe(result, entry, snapshot, probes)
    else:
        _count_containers(result, entry.root, snapshot)
    if stale_reason(entry) is None:
        from ktrdr.cli.sandbox.gate_report import last_gate, read_report

        result.live = {**(result.live or {}), "last_gate": last_gate(read_report(entry.root))}
    return result


def _observe(
    result: InstanceStatus,
    entry: Entry,
    snapshot: dict[str, list[Any]] | None,
    probes: GateProbes | None,
) -> None:
    """The state from fresh probes of the API and each worker (health.observe); containers
    whose service did not answer just now are not counted healthy, whatever Docker says."""
    from ktrdr.cli.sandbox.engine import LIST_TIMEOUT
    from ktrdr.cli.sandbox.gate_probes import DockerProbes
    from ktrdr.cli.sandbox.health import StackFacts, observe
    from ktrdr.cli.sandbox.stack_file import load_or_fallback

    # No readable compose file: no workers expected, the API is judged alone.
    stack = load_or_fallback(entry.root)
    facts = StackFacts(entry.instance_id, ports_for_slot(entry.slot).api, stack)
    containers = (snapshot or {}).get(entry.instance_id, [])
    if probes is not None:
        seen = observe(containers, facts, probes)
    else:
        real = DockerProbes(entry.instance_id, engine_timeout=LIST_TIMEOUT)
        try:
            seen = observe(containers, facts, real)
        finally:
            real.close()
    result.status = seen.state
    result.reasons = seen.reasons
    result.live = {k: v for k, v in seen.to_json().items() if k not in ("status", "reasons")}
    silent = set(seen.silent_workers) | (set() if seen.api_ok else {"backend"})
    _count_containers(result, entry.root, snapshot, not_answering=silent)


def _count_containers(
    result: InstanceStatus,
    root: Path,
    snapshot: dict[str, list[Any]] | None,
    *,
    not_answering: set[str] | frozenset[str] = frozenset(),
) -> None:
    if snapshot is None:
        return  # counts stay None: "Docker not reachable"
    found = snapshot.get(result.instance_id, [])
    not_counted = short_lived(root, found)
    containers = [c for c in found if c.service not in not_counted]
    result.containers_total = len(containers)
    result.containers_running = sum(1 for c in containers if c.state == "running")
    result.containers_healthy = sum(
        1 for c in containers if c.healthy and c.service not in not_answering
    )


def _unregistered_status(instance: Instance) -> InstanceStatus:
    values = instance.env
    from ktrdr.cli.sandbox.home import home_id

    owner, owner_home = values.get("KTRDR_OWNER", ""), values.get("KTRDR_OWNER_HOME", "")
    reason = "not in the registry: run `ktrdr sandbox init` here"
    if owner and owner != home_id():
        # Its containers are that home's: this home neither counts nor touches them.
        reason = f"belongs to KTRDR_HOME {owner_home or owner}: run with KTRDR_HOME set to it"
    result = InstanceStatus(
        instance_id=instance.instance_id,
        slot=instance.slot,
        path=instance.root,
        registered=False,
        status="unregistered",
        stale_reason=reason,
    )
    _count_containers(result, instance.root, containers_snapshot())
    return result


# --- destroy -------------------------------------------------------------------------------


@dataclass
class DestroyResult:
    instance_id: str
    slot: int
    path: Path
    kind: str
    branch_kept: str | None = None
    containers_removed: bool = False
    worktree_removed: bool = False
    env_file_removed: bool = False
    slot_released: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "slot": self.slot,
            "path": str(self.path),
            "kind": self.kind,
            "branch_kept": self.branch_kept,
            "containers_removed": self.containers_removed,
            "worktree_removed": self.worktree_removed,
            "env_file_removed": self.env_file_removed,
            "slot_released": self.slot_released,
            "notes": self.notes,
        }


def check_destroyable(entry: Entry, *, force: bool) -> None:
    """Refuse before anything is torn down: a dirty worktree (without force), or a path that
    is not the linked worktree we created."""
    if entry.state == "creating" and not entry.is_dead_claim():
        raise SandboxError(
            f"instance {entry.instance_id} is still being created (process {entry.pid}); "
            "wait for it to finish, then destroy it"
        )
    root = entry.root
    if entry.kind != "worktree" or not root.is_dir():
        return
    if _half_removed(entry):
        return
    if not ((root / ".git").exists() and worktree.is_linked_worktree(root)):
        raise SandboxError(
            f"{root} is not a linked git worktree: refusing to delete it; remove the entry "
            f"with `ktrdr sandbox prune` after moving it, or delete it yourself"
        )
    # Resuming a confirmed destroy: the files its worktree removal already deleted are not
    # the user's changes.
    dirty = worktree.dirty_paths(root, ignore_deleted=entry.state == "destroying")
    if dirty and not force:
        shown = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
        raise SandboxError(
            f"worktree {root} has uncommitted or untracked changes ({shown}): commit or stash "
            "them, or pass --force to discard them"
        )


# Made by runs in the worktree, ignored by git (info/exclude), so `git worktree remove` would
# delete them without asking: they are moved out first.
KEPT_ON_DESTROY = (Path(".sandbox") / "evidence", Path(".sandbox") / "test-results")


def _keep_results(entry: Entry) -> list[str]:
    """Move evidence bundles and test results out of a worktree about to be removed."""
    notes: list[str] = []
    stamp = registry.now_iso().replace(":", "")
    for relative in KEPT_ON_DESTROY:
        source = entry.root / relative
        if not source.is_dir() or not any(source.iterdir()):
            continue
        destination = unused_evidence_path(entry.instance_id, f"{relative.name}-{stamp}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(destination))
        notes.append(f"kept {relative} in {destination}")
    return notes


def _half_removed(entry: Entry) -> bool:
    """An interrupted destroy's worktree: its .git file is gone but git still lists the path."""
    root = entry.root
    return (
        entry.state == "destroying"
        and entry.kind == "worktree"
        and root.is_dir()
        and not (root / ".git").exists()
        and bool(entry.repo)
        and Path(str(entry.repo)).is_dir()
        and worktree.is_registered(Path(str(entry.repo)), root)
    )


def engine_unknown_reason() -> str | None:
    """Why the engine cannot be asked about containers, or None when it answers (or when this
    machine has neither a docker CLI nor an engine socket, so no container can exist)."""
    engine = _engine()
    if engine.engine_reachable():
        return None
    if shutil.which("docker") is None:
        if not engine.engine_socket_exists():
            return None
        return f"the docker CLI is not on PATH but an engine socket exists ({engine.engine_host()})"
    return f"the Docker engine at {engine.engine_host()} does not answer"


def teardown_containers(instance: Instance) -> tuple[bool, str]:
    """Remove the instance's own containers, volumes and networks. (confirmed gone, note)."""
    compose, ownership = _compose(), _ownership()
    unknown = engine_unknown_reason()
    if unknown is not None:
        return False, (
            f"{unknown}: containers and volumes could not be removed or confirmed gone, so "
            f"slot {instance.slot} stays claimed; fix that and rerun "
            f"`ktrdr sandbox destroy {instance.instance_id}` (or `ktrdr sandbox prune`)"
        )
    if shutil.which("docker") is None:  # and no engine socket: there is no engine here
        return True, "this machine has no Docker engine, so the instance has no containers"
    if instance.env and instance.env_path.is_file():
        project = compose.project_of(instance.env)
        ownership.refuse_foreign(
            instance.instance_id, project, checkout=instance.root, action="destroy"
        )
    compose.down(instance.instance_id, instance, volumes=True)
    left: list[str] = ownership.leftovers(instance.instance_id)
    if left:
        return False, (
            f"still present after down: {', '.join(left[:5])}; slot {instance.slot} stays claimed; "
            f"remove them and rerun `ktrdr sandbox destroy {instance.instance_id}`"
        )
    return True, "containers, volumes and networks removed"


def _claim_destroy(instance_id: str) -> None:
    """State `destroying` with our pid; refused while another live process is destroying it
    (two teardowns at once race inside git and compose and blame the user's changes)."""
    with registry.transaction() as entries:
        entry = entries.get(instance_id)
        if entry is None:
            raise SandboxError(f"instance {instance_id} is no longer registered; nothing to do")
        if (
            entry.state == "destroying"
            and entry.pid not in (None, os.getpid())
            and registry.pid_alive(entry.pid)
        ):
            raise SandboxError(
                f"instance {instance_id} is being destroyed by process {entry.pid}; wait for it "
                "to finish (rerun destroy only if that process is gone)"
            )
        entry.state, entry.pid = "destroying", os.getpid()


def _remove_entry(instance_id: str) -> None:
    with registry.transaction() as entries:
        entries.pop(instance_id, None)


def destroy_instance(
    instance: Instance,
    *,
    force: bool,
    on_start: Callable[[], None] | None = None,
    on_wait: Callable[[str], None] = lambda message: None,
) -> DestroyResult:
    """Containers and volumes, then the worktree we created (or just the clone's env file),
    then the registry entry — the slot stays claimed until the containers are confirmed gone.
    Holds the instance lock (waiting for a running `up` or `down`, told through `on_wait`).
    `on_start` runs once nothing can refuse any more (for a progress line)."""
    from ktrdr.cli.sandbox.locks import instance_lock

    with instance_lock(instance.instance_id, command="ktrdr sandbox destroy", on_wait=on_wait):
        current = registry.load().get(instance.instance_id)
        if current is None:
            raise SandboxError(
                f"instance {instance.instance_id} is no longer registered (destroyed meanwhile?); "
                "nothing to do"
            )
        return _destroy_locked(instance, current, force=force, on_start=on_start)


@dataclass
class DestroyBatch:
    """The outcome of destroying one instance or all of them (`destroy --all` goes on past a
    refusal and reports every refusal at the end)."""

    results: list[DestroyResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.results]

    def failure(self) -> SandboxError | None:
        if not self.failures:
            return None
        return SandboxError(
            f"{len(self.failures)} instance(s) not destroyed: " + " | ".join(self.failures)
        )


def destroy_many(
    targets: list[Instance],
    *,
    force: bool,
    keep_going: bool,
    on_start: Callable[[Instance], None] = lambda instance: None,
    on_wait: Callable[[str], None] = lambda message: None,
) -> DestroyBatch:
    """Destroy each target in turn; with `keep_going` a refusal is recorded and the next one
    tried, otherwise it is raised. A KeyboardInterrupt propagates (the caller says which
    instance to finish)."""
    batch = DestroyBatch()
    for instance in targets:
        try:
            batch.results.append(
                destroy_instance(
                    instance, force=force, on_start=partial(on_start, instance), on_wait=on_wait
                )
            )
        except SandboxError as e:
            if not keep_going:
                raise
            batch.failures.append(f"{instance.instance_id}: {e}")
        except KeyboardInterrupt:
            raise DestroyInterrupted(instance) from None
    return batch


class DestroyInterrupted(Interrupted):
    """Ctrl-C (or a cancelled MCP call) during the destroy of `instance`; the hint says how
    to finish it."""

    def __init__(self, instance: Instance) -> None:
        super().__init__(
            f"interrupted: destroy of {instance.instance_id} stopped midway; slot "
            f"{instance.slot} stays claimed: rerun `ktrdr sandbox destroy "
            f"{instance.instance_id}` to finish"
        )
        self.instance = instance


def _destroy_locked(
    instance: Instance, entry: Entry, *, force: bool, on_start: Callable[[], None] | None
) -> DestroyResult:
    check_destroyable(entry, force=force)
    unknown = engine_unknown_reason()
    if unknown is not None:
        raise SandboxError(
            f"cannot destroy {entry.instance_id}: {unknown}, so its containers and volumes can "
            "be neither removed nor confirmed gone; nothing was changed: start Docker (or put "
            "docker on PATH) and retry"
        )
    _claim_destroy(entry.instance_id)
    if on_start is not None:
        on_start()
    result = DestroyResult(entry.instance_id, entry.slot, entry.root, entry.kind)
    result.containers_removed, note = teardown_containers(instance)
    result.notes.append(note)
    root = entry.root
    if entry.kind == "worktree":
        result.notes += _keep_results(entry)
        if _half_removed(entry):
            # A killed `git worktree remove` deleted the .git file with part of the files;
            # git still lists the path, so it was ours and the user confirmed its removal.
            repo = Path(str(entry.repo))
            with worktree.repo_lock(repo):
                shutil.rmtree(root)
                worktree.prune(repo)
            result.worktree_removed = True
        elif root.is_dir():
            with worktree.repo_lock(root):
                # A resumed destroy passed the dirty check above, ignoring files it had deleted.
                worktree.remove(root, root, force=force or entry.state == "destroying")
            result.worktree_removed = True
        elif entry.repo and Path(entry.repo).is_dir():
            worktree.prune_locked(Path(entry.repo))
        result.branch_kept = entry.branch
    else:
        env_path = root / SANDBOX_ENV_FILENAME
        if env_path.is_file() and instance.env.get("KTRDR_INSTANCE_ID") == entry.instance_id:
            env_path.unlink()
            result.env_file_removed = True
        result.notes.append(f"clone {root} kept (only its {SANDBOX_ENV_FILENAME} was removed)")
    if result.containers_removed:
        _remove_entry(entry.instance_id)
        result.slot_released = True
    return result


# --- prune ---------------------------------------------------------------------------------


@dataclass
class PrunedEntry:
    entry: Entry
    reason: str
    removed: bool
    note: str = ""
    kept: str = ""  # files of the user's left on disk, and how to delete them (also in note)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.entry.instance_id,
            "slot": self.entry.slot,
            "path": self.entry.path,
            "reason": self.reason,
            "removed": self.removed,
            "note": self.note,
        }


def prune(*, dry_run: bool) -> list[PrunedEntry]:
    """Stale entries (path or env file gone, dead create claims): their leftover containers
    and volumes are removed by label, then the entry. Kept when that cannot be confirmed."""
    pruned: list[PrunedEntry] = []
    for entry in registry.load().values():
        reason = stale_reason(entry)
        if reason is None:
            continue
        if dry_run:
            pruned.append(PrunedEntry(entry, reason, removed=False, note="dry run"))
            continue
        if entry.is_dead_claim() and not (entry.root / SANDBOX_ENV_FILENAME).exists():
            gone, note = True, "create never finished, so it has no containers"
        else:
            gone, note = teardown_containers(from_entry(entry))
        if gone:
            gone = _remove_if_unchanged(entry)
            note = note if gone else "entry changed meanwhile; left as is"
            if gone and entry.kind == "worktree" and entry.repo and Path(entry.repo).is_dir():
                worktree.prune_locked(Path(entry.repo))
        kept = _kept_worktree(entry) if gone else ""
        note = f"{note}; {kept}" if kept else note
        pruned.append(PrunedEntry(entry, reason, removed=gone, note=note, kept=kept))
    return pruned


def _kept_worktree(entry: Entry) -> str:
    """Prune drops only the entry: a worktree still on disk may hold uncommitted work, so it is
    left for the user, who is told how to delete it."""
    if entry.kind != "worktree" or not entry.root.is_dir():
        return ""
    import shlex

    git = "git"
    if entry.repo and Path(entry.repo).is_dir():
        git += f" -C {shlex.quote(entry.repo)}"
    path = shlex.quote(entry.path)
    text = f"worktree {entry.path} kept (it may hold your work): `{git} worktree remove {path}`"
    if entry.branch and entry.branch == entry.name:  # a branch create made for it
        text += f", then `{git} branch -d {shlex.quote(entry.branch)}`"
    return text + " to delete it"


def _remove_if_unchanged(entry: Entry) -> bool:
    with registry.transaction() as entries:
        current = entries.get(entry.instance_id)
        if current is None or current.to_json() != entry.to_json():
            return False
        del entries[entry.instance_id]
        return True

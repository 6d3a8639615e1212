"""`ktrdr sandbox destroy`: containers and volumes, then the worktree (or a clone's env
file), then the registry entry.

The slot stays claimed (state `destroying`) until the containers and volumes are confirmed
gone, and nothing changes when the engine cannot be asked: unknown is never "no containers".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import owned_process, registry
from ktrdr.cli.sandbox.home.directory import unused_evidence_path
from ktrdr.cli.sandbox.home.locks import instance_lock, remove_lock_files
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.instances.locate import Instance
from ktrdr.cli.sandbox.policy.enforcement import checked_model_path
from ktrdr.cli.sandbox.remote import instance as remote_instance
from ktrdr.cli.sandbox.stack import docker_access
from ktrdr.envfile import SANDBOX_ENV_FILENAME
from ktrdr.errors import Interrupted


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


def engine_unknown_reason(engine: Engine) -> str | None:
    """Why `engine` cannot be asked about containers, or None when it answers (or when this
    machine has neither a docker CLI nor an engine socket, so no container can exist)."""
    docker = docker_access.docker()
    if docker.engine_reachable(engine):
        return None
    host = docker.engine_host(engine)
    if shutil.which("docker") is None:
        if not docker.engine_socket_exists(engine):
            return None
        return f"the docker CLI is not on PATH but an engine socket exists ({host})"
    return f"the Docker engine at {host} does not answer"


def teardown_containers(instance: Instance) -> tuple[bool, str]:
    """Remove the instance's own containers, volumes and networks. (confirmed gone, note)."""
    docker = docker_access.docker()
    unknown = engine_unknown_reason(instance.engine)
    if unknown is not None:
        return False, (
            f"{unknown}: containers and volumes could not be removed or confirmed gone, so "
            f"slot {instance.slot} stays claimed; fix that and rerun "
            f"`ktrdr sandbox destroy {instance.instance_id}` (or `ktrdr sandbox prune`)"
        )
    if shutil.which("docker") is None:  # and no engine socket: there is no engine here
        return True, "this machine has no Docker engine, so the instance has no containers"
    refuse_foreign_resources(instance)
    if instance.remote:  # its watch would sync into containers being removed
        remote_instance.stop(instance)
    docker.down(instance.engine, instance.instance_id, instance, volumes=True)
    left = docker.leftovers(instance.engine, instance.instance_id)
    if left:
        return False, (
            f"still present after down: {', '.join(left[:5])}; slot {instance.slot} stays claimed; "
            f"remove them and rerun `ktrdr sandbox destroy {instance.instance_id}`"
        )
    if instance.remote:
        remote_instance.forget(instance)
    return True, "containers, volumes and networks removed"


def refuse_foreign_resources(instance: Instance) -> None:
    """Refuse when the instance's project holds another owner's resources (removing them
    would take that owner's stack down). The project is the home's record, never the view."""
    if not instance.env or shutil.which("docker") is None:
        return
    docker = docker_access.docker()
    project = docker.project_of(instance.env)
    docker.refuse_foreign(
        instance.engine, instance.instance_id, project, checkout=instance.root, action="destroy"
    )


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
    checked_model_path(instance_id).unlink(missing_ok=True)
    # What the instance's processes left under the home (a hook's background start, its log):
    # a later instance of the same id must not be shown this one's.
    state = owned_process.state_dir(instance_id)
    owned_process.stop_all(state)
    owned_process.remove_state(state)


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

    with instance_lock(instance.instance_id, command="ktrdr sandbox destroy", on_wait=on_wait):
        current = registry.load().get(instance.instance_id)
        if current is None:
            raise SandboxError(
                f"instance {instance.instance_id} is no longer registered (destroyed meanwhile?); "
                "nothing to do"
            )
        result = _destroy_locked(instance, current, force=force, on_start=on_start)
    forget_lock_files(instance.instance_id)
    return result


def forget_lock_files(instance_id: str) -> None:
    """The lock files of an instance no longer registered (kept while anyone holds the lock)."""

    remove_lock_files(instance_id, still_gone=lambda: instance_id not in registry.load())


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


def _engine_hint(engine: Engine) -> str:
    if engine.context:
        return engine.retry_hint()
    return "start Docker (or put docker on PATH) and retry"


def _destroy_locked(
    instance: Instance, entry: Entry, *, force: bool, on_start: Callable[[], None] | None
) -> DestroyResult:
    check_destroyable(entry, force=force)
    unknown = engine_unknown_reason(instance.engine)
    if unknown is not None:
        raise SandboxError(
            f"cannot destroy {entry.instance_id}: {unknown}, so its containers and volumes can "
            "be neither removed nor confirmed gone; nothing was changed (its slot stays "
            f"claimed): {_engine_hint(instance.engine)}"
        )
    # Every refusal comes before the claim: a refused destroy leaves the entry as it was.
    refuse_foreign_resources(instance)
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

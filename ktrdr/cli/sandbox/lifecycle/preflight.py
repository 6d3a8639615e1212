"""Before a stack starts: the env file agrees with itself, the registry and the port map; the
instance is this home's; no other owner's resources share its project; its slot's ports are
free of anything but its own containers. Also the warnings `up` gives (shared data, memory,
image mode)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from ktrdr.cli.sandbox.base import proc, stack_file
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import home_id, ktrdr_home
from ktrdr.cli.sandbox.home.shared_data import SUBDIRS as SHARED_SUBDIRS
from ktrdr.cli.sandbox.instances.locate import Instance
from ktrdr.cli.sandbox.provision import allocation
from ktrdr.cli.sandbox.slots import slot_range

DEFAULT_TIMEOUT = 300.0


def validate(instance: Instance) -> None:
    """The instance is still registered here as it was located (a destroy or re-create may have
    run meanwhile), ready, and has a stack definition. Its identity needs no check here: it is
    the home's record, and `locate` refused a view that disagrees with it."""

    instance.require_env()
    check_owner(instance)
    entry = registry.load().get(instance.instance_id)
    if entry is None:
        raise SandboxError(
            f"instance {instance.instance_id} is not registered: run `ktrdr sandbox init` in "
            f"{instance.root}"
        )
    if entry.slot != instance.slot:
        raise SandboxError(
            f"instance {instance.instance_id} was on slot {instance.slot} when this command "
            f"started, and the registry now says slot {entry.slot}; run the command again"
        )
    if Path(entry.path).resolve() != instance.root.resolve():
        raise SandboxError(
            f"instance {instance.instance_id} is registered at {entry.path}, not "
            f"{instance.root}; run `ktrdr sandbox doctor` to reconcile"
        )
    if entry.state == "destroying":
        raise SandboxError(
            f"instance {instance.instance_id} is being destroyed (or a destroy was interrupted): "
            f"`ktrdr sandbox destroy {instance.instance_id}` finishes it"
        )
    if entry.state != "ready":
        raise SandboxError(
            f"instance {instance.instance_id} is {entry.state}: wait for that to finish, or "
            "run `ktrdr sandbox doctor --fix` if it was interrupted"
        )
    if not (instance.root / stack_file.COMPOSE_FILE).is_file():
        raise SandboxError(
            f"{instance.root / stack_file.COMPOSE_FILE} is missing: this checkout has no stack "
            "definition; update the branch from main"
        )


def check_owner(instance: Instance) -> None:
    """Refuse an instance that another KTRDR_HOME owns: its registry, slot and containers are
    that home's, and acting on them from here is how one home took over another's stack."""
    owner = instance.require_env().env.get("KTRDR_OWNER", "")
    if owner == home_id():
        return
    where = instance.env.get("KTRDR_OWNER_HOME") or f"the home with id {owner}"
    raise SandboxError(
        f"instance {instance.instance_id} at {instance.root} belongs to KTRDR_HOME {where}, not "
        f"to {ktrdr_home()}: run this with KTRDR_HOME={where}, or create your own instance "
        "with `ktrdr sandbox create NAME`"
    )


def preflight_ports(instance: Instance, own_ports: set[int]) -> None:
    """Refuse before starting anything when a port of the slot is held by anything other than
    this instance's own containers."""

    if instance.remote:  # the slot's ports are on the remote: ask what its engine publishes
        published = engine.published_ports(instance.engine)
        busy = allocation.busy_ports(
            instance.slot, ignore_ports=own_ports, probe=published.__contains__, with_owners=False
        )
    else:
        busy = allocation.busy_ports(instance.slot, ignore_ports=own_ports)
    if not busy:
        return
    free = "" if instance.remote else free_slot_hint(instance.slot)
    raise SandboxError(
        f"cannot start {instance.instance_id}: slot {instance.slot} {busy[0].describe()}"
        f"{' (and ' + str(len(busy) - 1) + ' more)' if len(busy) > 1 else ''}, not by this "
        f"instance; stop that process, or move the instance to a free slot{free}"
    )


def free_slot_hint(current: int) -> str:

    taken = {e.slot for e in registry.load().values()}
    for slot in slot_range.configured():
        if slot == current or slot in taken:
            continue
        if not allocation.busy_ports(slot, with_owners=False):
            return (
                f" (slot {slot} is free: `ktrdr sandbox destroy`, then "
                f"`ktrdr sandbox create NAME --slot {slot}`)"
            )
    return ""


def check_shared_data(instance: Instance) -> None:
    """Refuse to start without the shared data dirs: the compose file binds them with
    `create_host_path: false`, so compose would fail on the first container that mounts them,
    deep in the gate's output. Nothing has been started when this refuses."""
    shared = Path(instance.env["KTRDR_SHARED_DIR"])
    missing = [name for name in SHARED_SUBDIRS if not (shared / name).is_dir()]
    if missing:
        raise SandboxError(
            f"shared data dir {shared} has no {'/, '.join(missing)}/ (every stack mounts it): "
            "run `ktrdr sandbox init-shared` once for this home, then `ktrdr sandbox up` again; "
            "nothing was started"
        )


def prepare_start(instance: Instance, notify: Callable[[str], None]) -> set[int]:
    """Before compose starts anything: refuse a project that holds another owner's resources,
    repair duplicated networks, thaw paused containers. Returns the host ports the instance's
    own containers publish (in any state: paused, restarting or exited ones are still its
    own), which the port preflight must not call foreign."""
    engine.ensure_engine(instance.engine)
    foreign, other_homes, duplicates, containers = proc.concurrently(  # independent reads
        functools.partial(
            ownership.foreign_in_project, instance.engine, instance.project, checkout=instance.root
        ),
        functools.partial(ownership.slots_of_other_homes, instance.engine),
        functools.partial(ownership.duplicate_networks, instance.engine, instance.instance_id),
        functools.partial(engine.ps, instance.engine, instance.instance_id),
    )
    ownership.refuse_found_foreign(instance.instance_id, instance.project, foreign, action="start")
    holder = other_homes.get(instance.slot)
    if holder is not None:  # its create ran while this home could not see the engine
        raise SandboxError(
            f"slot {instance.slot} of {instance.instance_id} is claimed by {holder}: "
            "destroy this instance and create it again (it gets a free slot), or destroy "
            "that one with its KTRDR_HOME"
        )
    if duplicates:
        for repaired in ownership.repair_networks(
            instance.engine, instance.instance_id, duplicates
        ):
            notify(f"Repaired: {repaired} (containers recreated, volumes kept)")
        containers = engine.ps(instance.engine, instance.instance_id)  # the repair removed them
    thawed = engine.unpause(instance.engine, containers)
    if thawed:
        notify(f"Resumed paused containers: {', '.join(thawed)}")
    return {p for c in containers for p in c.ports}

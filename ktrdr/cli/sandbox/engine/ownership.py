"""Who owns what on the shared engine, read from the labels: this home's resources of one
instance (what is left of it, removing them), another owner's resources in a compose project
(refused), duplicated networks, and the slot-claim markers of machine_slots.

Every removal here goes by this home's owner label AND the instance label (engine.owned_filters):
another home's or an unlabelled resource is reported, never touched.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ktrdr.cli import settings
from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.queries import (
    CHECKOUT_LABEL,
    INSTANCE_LABEL,
    LIST_TIMEOUT,
    OWNER_HOME_LABEL,
    OWNER_LABEL,
    PROJECT_LABEL,
    QUERY_TIMEOUT,
    SLOT_LABEL,
    TEST_LABEL,
    WORKING_DIR_LABEL,
    ensure_engine,
    label_format,
    owned_filters,
    owned_ids,
)
from ktrdr.cli.sandbox.home.directory import HOME_ID_FILE, home_id, ktrdr_home
from ktrdr.cli.sandbox.home.instance import project_name
from ktrdr.cli.sandbox.slots import machine_slots

# --- one instance's resources ---------------------------------------------------------------


def remove_by_label(engine: Engine, instance_id: str, *, volumes: bool) -> bool:
    """Remove labelled containers, networks (and volumes); True when nothing is left."""
    containers = owned_ids(engine, ["ps", "-a", "-q"], instance_id)
    if containers:
        proc.run(engine.argv("rm", "-f", "-v", *containers), timeout=120, what="docker rm")
    networks = owned_ids(engine, ["network", "ls", "-q"], instance_id)
    if networks:
        proc.run(engine.argv("network", "rm", *networks), timeout=60, what="docker network rm")
    if volumes:
        vols = owned_ids(engine, ["volume", "ls", "-q"], instance_id)
        if vols:
            proc.run(engine.argv("volume", "rm", "-f", *vols), timeout=60, what="docker volume rm")
    left = leftovers(engine, instance_id)
    return not left or (not volumes and all(item.startswith("volume ") for item in left))


def leftovers(engine: Engine, instance_id: str) -> list[str]:
    """Containers, volumes and networks still labelled for the instance; [] when clean."""
    ensure_engine(engine)
    left: list[str] = []
    queries = (
        ("container", ["ps", "-a", "--format", "{{.Names}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
        ("network", ["network", "ls", "--format", "{{.Name}}"]),
    )
    for kind, args in queries:
        for name in owned_ids(engine, args, instance_id):
            left.append(f"{kind} {name}")
    return left


def created_at(engine: Engine, kind: str, name: str) -> float | None:
    """When a volume or network was made (epoch seconds); None when the engine does not say."""
    result = proc.run(
        engine.argv(kind, "inspect", "--format", "{{json .CreatedAt}}", name),
        timeout=30,
        check=False,
    )
    try:
        text = str(json.loads(result.stdout.strip() or "null") or "")
        if kind == "network":  # 2026-11-27T05:50:11.123456789Z: trim to microseconds
            head, _, frac = text.partition(".")
            text = f"{head}.{frac[:6]}+00:00" if frac else text.replace("Z", "+00:00")
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, json.JSONDecodeError):
        return None


# --- every resource with its owner labels ---------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """A container, volume or network with its owner labels ("" when absent)."""

    kind: str
    name: str
    instance_id: str
    owner: str
    owner_home: str
    checkout: str
    project: str
    test: str = "0"
    working_dir: str = ""
    resource_id: str = ""

    def owner_description(self) -> str:
        if not self.owner:
            return "no owner label (made before owner labels, or by hand)"
        where = f"KTRDR_HOME {self.owner_home}" if self.owner_home else f"home {self.owner}"
        return where + (f", checkout {self.checkout}" if self.checkout else "")


_RESOURCE_LABELS = (
    INSTANCE_LABEL,
    OWNER_LABEL,
    OWNER_HOME_LABEL,
    CHECKOUT_LABEL,
    PROJECT_LABEL,
    TEST_LABEL,
)


def resources(
    engine: Engine, filters: list[str], *, timeout: float = QUERY_TIMEOUT
) -> list[Resource]:
    """Containers, volumes and networks matching docker `--filter`s, with their labels (three
    queries). Raises SandboxError when the engine cannot be asked."""
    labels = "\t".join(label_format(key) for key in _RESOURCE_LABELS)
    queries = (  # at once: three short engine queries
        (
            "container",
            ["ps", "-a"],
            "{{.Names}}\t{{.ID}}\t" + labels + "\t" + label_format(WORKING_DIR_LABEL),
        ),
        ("volume", ["volume", "ls"], "{{.Name}}\t{{.Name}}\t" + labels),
        ("network", ["network", "ls"], "{{.Name}}\t{{.ID}}\t" + labels),
    )
    listings = proc.concurrently(
        *(
            functools.partial(
                proc.run,
                engine.argv(*args, *filters, "--format", fmt),
                timeout=timeout,
                what=f"docker {kind} ls",
            )
            for kind, args, fmt in queries
        )
    )
    found: list[Resource] = []
    for (kind, _, _), listed in zip(queries, listings, strict=True):
        for line in listed.stdout.splitlines():
            parts = [*line.split("\t"), *[""] * 10]
            name, resource_id, instance_id, owner, home, checkout, project, test = parts[:8]
            found.append(
                Resource(
                    kind,
                    name,
                    instance_id,
                    owner,
                    home,
                    checkout,
                    project,
                    test or "0",
                    working_dir=parts[8] if kind == "container" else "",
                    resource_id=resource_id,
                )
            )
    return found


def instance_resources(engine: Engine) -> list[Resource]:
    """Every resource on the engine carrying an instance label, whoever owns it (doctor)."""
    return resources(engine, ["--filter", f"label={INSTANCE_LABEL}"])


def foreign_in_project(engine: Engine, project: str, *, checkout: Path) -> list[Resource]:
    """Resources of compose project `project` that this instance does not own: another home's
    (owner label differs), another checkout's, or unlabelled ones. Compose would adopt and
    recreate them, so `up`, `down` and `destroy` refuse to touch such a project."""
    mine = home_id()
    here = str(checkout.resolve())
    foreign: list[Resource] = []
    for item in resources(engine, ["--filter", f"label={PROJECT_LABEL}={project}"]):
        elsewhere = bool(item.checkout) and str(Path(item.checkout).resolve()) != here
        if item.owner != mine or elsewhere:
            foreign.append(item)
    return foreign


def refuse_foreign(
    engine: Engine, instance_id: str, project: str, *, checkout: Path, action: str
) -> None:
    """One line naming the owner when compose project `project` holds anything not ours."""
    foreign = foreign_in_project(engine, project, checkout=checkout)
    refuse_found_foreign(instance_id, project, foreign, action=action)


def refuse_found_foreign(
    instance_id: str, project: str, foreign: list[Resource], *, action: str
) -> None:
    """refuse_foreign on what foreign_in_project found."""
    if not foreign:
        return
    first = foreign[0]
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    raise SandboxError(
        f"cannot {action} {instance_id}: compose project {project} on this engine holds "
        f"{first.kind} {first.name}{more} owned by {first.owner_description()}, not by this "
        "instance; nothing was changed: use that owner's KTRDR_HOME, or remove its resources "
        "there first"
    )


def duplicate_networks(engine: Engine, instance_id: str) -> dict[str, list[str]]:
    """Network name -> ids, for names this instance's networks hold more than once (two
    concurrent `compose up`s can each create `<project>_default`)."""
    by_name: dict[str, list[str]] = {}
    for item in resources(engine, owned_filters(instance_id)):
        if item.kind == "network":
            by_name.setdefault(item.name, []).append(item.resource_id)
    return {name: ids for name, ids in by_name.items() if len(ids) > 1}


def repair_networks(
    engine: Engine, instance_id: str, duplicates: dict[str, list[str]]
) -> list[str]:
    """For the networks duplicate_networks found held twice: remove the instance's containers
    (volumes kept, so no data is lost) and every copy of each, so the next `compose up` makes
    exactly one. Returns what was done."""
    if not duplicates:
        return []
    containers = owned_ids(engine, ["ps", "-a", "-q"], instance_id)
    if containers:
        proc.run(engine.argv("rm", "-f", *containers), timeout=120, what="docker rm")
    ids = [network_id for group in duplicates.values() for network_id in group]
    proc.run(engine.argv("network", "rm", *ids), timeout=60, what="docker network rm")
    return [f"network {name} existed {len(group)} times" for name, group in duplicates.items()]


def network_attachments(engine: Engine, networks: list[str]) -> list[tuple[str, str]]:
    """(network, container id) for every container attached to the given networks (short
    ids, as `docker network ls` prints them); a network gone meanwhile is skipped."""
    if not networks:
        return []
    inspected = proc.run(
        engine.argv("network", "inspect", "--format", "{{.Id}}\t{{json .Containers}}", *networks),
        timeout=QUERY_TIMEOUT,
        check=False,
        what="docker network inspect",
    )
    pairs: list[tuple[str, str]] = []
    for line in inspected.stdout.splitlines():
        full_id, _, attached = line.partition("\t")
        network = next((n for n in networks if full_id.startswith(n)), None)
        if network is None or not attached.strip():
            continue
        pairs += [(network, container_id) for container_id in json.loads(attached) or {}]
    return pairs


def remove_network_with_its_containers(engine: Engine, network: str) -> list[str]:
    """Remove `network` and this home's containers attached to it (volumes kept: each
    instance's next `up` recreates its containers on a network of its own). Refused, touching
    nothing, when another owner's container is attached. Returns the containers removed."""
    inspected = proc.run(
        engine.argv("network", "inspect", "--format", "{{json .Containers}}", network),
        timeout=QUERY_TIMEOUT,
        what="docker network inspect",
    )
    attached = list(json.loads(inspected.stdout.strip() or "null") or {})
    mine: set[str] = set()
    if attached:
        listed = proc.run(
            engine.argv(
                "ps", "-a", "-q", "--no-trunc", "--filter", f"label={OWNER_LABEL}={home_id()}"
            ),
            timeout=QUERY_TIMEOUT,
            what="docker ps",
        )
        mine = set(listed.stdout.split())
    foreign = [c for c in attached if c not in mine]
    if foreign:
        raise SandboxError(
            f"network {network} also holds {len(foreign)} container(s) not of this home "
            f"({foreign[0][:12]}): not removed; disconnect them first"
        )
    if attached:
        proc.run(engine.argv("rm", "-f", *attached), timeout=120, what="docker rm")
    proc.run(engine.argv("network", "rm", network), timeout=60, what="docker network rm")
    return attached


# --- slot-claim markers (see machine_slots) -------------------------------------------------


@dataclass(frozen=True)
class SlotFacts:
    """What a slot claim must know from the engine, from one volume listing."""

    own_volumes: list[str]  # this home's volumes labelled with the instance being claimed
    other_homes: dict[int, str]  # slot -> who holds it (slots_of_other_homes)
    # Slots whose holder has only its claim marker (created, never started): "claimed", not
    # "held"; their other_homes text ends with when it was claimed.
    claimed_only: frozenset[int] = frozenset()


CLAIMED_AT_LABEL = "ktrdr.claimed-at"  # on a slot-claim marker: when create/init claimed it


def slot_facts(engine: Engine, instance_id: str) -> SlotFacts:
    """This home's volumes of `instance_id` (an earlier instance's leftovers) and the slots
    other homes hold, from one query. Empty when the engine cannot be asked quickly: the port
    probe still guards running stacks."""
    fields = (INSTANCE_LABEL, OWNER_LABEL, OWNER_HOME_LABEL, SLOT_LABEL, CLAIMED_AT_LABEL)
    row = "\t".join(["{{.Name}}", *(label_format(key) for key in fields)])
    argv = engine.argv("volume", "ls", "--filter", f"label={OWNER_LABEL}", "--format", row)
    try:
        listed = proc.run(argv, timeout=LIST_TIMEOUT, check=False, what="docker volume ls")
    except SandboxError:
        return SlotFacts([], {})
    mine = home_id()
    own: list[str] = []
    held: dict[int, str] = {}
    claimed: dict[int, str] = {}  # slots whose holder has only its claim marker
    for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
        name, instance, owner, owner_home, slot, since = [*line.split("\t"), *[""] * 6][:6]
        if owner == mine and instance == instance_id:
            own.append(name)
        elif owner and owner != mine and slot.isdigit() and _home_exists(owner, owner_home):
            who = f"instance {instance} of KTRDR_HOME {owner_home or owner}"
            if name.endswith(machine_slots.MARKER_SUFFIX):
                claimed.setdefault(int(slot), f"{who}{f' since {since}' if since else ''}")
            else:
                held[int(slot)] = who
    return SlotFacts(own, {**claimed, **held}, frozenset(claimed.keys() - held.keys()))


def slots_of_other_homes(engine: Engine) -> dict[int, str]:
    """Slot -> who holds it, for slots whose volumes on this engine belong to another home that
    still exists (a stopped or never started stack holds no port, but it will want its slot's
    ports on `up`; machine_slots explains the claim marker). Empty
    when the engine cannot be asked quickly: the port probe still guards running stacks."""
    return slot_facts(engine, "").other_homes


def mark_slot(engine: Engine, instance_id: str, slot: int, *, replace: bool = False) -> bool:
    """Make the instance's slot-claim marker (see machine_slots); `replace` first removes one
    an earlier claim left (init may move an instance to another slot). False when the engine
    could not be asked: the claim then lives only in this home's registry."""
    owner = home_id()
    labels = {
        OWNER_LABEL: owner,
        OWNER_HOME_LABEL: str(ktrdr_home()),
        INSTANCE_LABEL: instance_id,
        SLOT_LABEL: str(slot),
        CLAIMED_AT_LABEL: datetime.now().astimezone().isoformat(timespec="seconds"),
        TEST_LABEL: settings.get("KTRDR_TEST", "0"),
    }
    name = machine_slots.marker_name(project_name(instance_id, owner))
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    try:
        if replace:  # a marker of an earlier slot must not keep that slot busy
            proc.run(engine.argv("volume", "rm", "-f", name), timeout=LIST_TIMEOUT, check=False)
        made = proc.run(
            engine.argv("volume", "create", *label_args, name), timeout=LIST_TIMEOUT, check=False
        )
    except SandboxError:  # no docker CLI, or the engine hangs
        return False
    return made.returncode == 0


def unmark_slot(engine: Engine, instance_id: str) -> None:
    """Remove the slot-claim marker of a create that is undone (best effort: doctor reports
    a marker left behind as an orphan)."""
    name = machine_slots.marker_name(project_name(instance_id, home_id()))
    with contextlib.suppress(SandboxError):
        proc.run(engine.argv("volume", "rm", "-f", name), timeout=LIST_TIMEOUT, check=False)


def _home_exists(owner: str, owner_home: str) -> bool:
    """Whether the home that labelled a resource is still there. Leftovers of a deleted home
    (a killed test run's temp KTRDR_HOME) hold no port and nobody can start them again, so
    they must not block a slot forever; doctor lists them."""
    if not owner_home:
        return True
    try:
        return (Path(owner_home) / HOME_ID_FILE).read_text().strip() == owner
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:  # another user's home we may not read: assume it is alive
        return True

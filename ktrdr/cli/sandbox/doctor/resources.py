"""Doctor's check of the Docker resources, sorted by their owner labels: this home's of a
registered instance (never orphans; a duplicated network is reported), this home's whose
instance is gone (orphans, removed with --fix), a lost registration (reported), and another
home's or unlabelled ones (reported, never touched)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.doctor.checks import retry_once
from ktrdr.cli.sandbox.doctor.report import DoctorReport, Problem
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.lost_homes import LostStack, group_lost
from ktrdr.cli.sandbox.engine.ownership import Resource
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.home.instance import project_name, read_env
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.stack import compose
from ktrdr.envfile import SANDBOX_ENV_FILENAME

ORPHAN_GRACE_S = 60.0


@dataclass
class _InstanceResources:
    owner: str
    instance_id: str
    items: list[Resource] = field(default_factory=list)

    def names(self) -> str:
        return ", ".join(f"{i.kind} {i.name}" for i in self.items)


def _unregistered_root(group: _InstanceResources) -> Path | None:
    """The checkout of an instance of this home that the registry lost: its containers'
    compose directory or its resources' checkout label still holds a `.env.sandbox` naming it.
    Its volumes hold the user's data: reported, never removed."""
    for item in group.items:
        for where in (item.working_dir, item.checkout):
            if not where:
                continue
            try:
                values = read_env(Path(where) / SANDBOX_ENV_FILENAME)
            except SandboxError:
                continue
            if values.get("KTRDR_INSTANCE_ID") == group.instance_id and values.get(
                "KTRDR_OWNER", group.owner
            ) in (group.owner, ""):
                return Path(where)
    return None


def check_docker_resources(
    report: DoctorReport,
    engine: Engine,
    entries: dict[str, Entry],
    *,
    fix: bool,
    now: Callable[[], float] = time.time,
) -> None:
    """Sort every ktrdr-labelled resource on `engine` by owner. Only this home's resources
    whose instance is gone are orphans (removed with --fix); another home's are reported as
    belonging to it and resources without an owner label as legacy, neither ever touched."""
    mine = home_id()
    groups: dict[tuple[str, str], _InstanceResources] = {}
    found = ownership.instance_resources(engine)
    for item in found:
        key = (item.owner, item.instance_id)
        groups.setdefault(key, _InstanceResources(*key)).items.append(item)
    others: dict[str, list[_InstanceResources]] = {}
    for (owner, instance_id), group in sorted(groups.items()):
        if owner != mine:
            others.setdefault(owner, []).append(group)
        elif instance_id in entries:
            _check_duplicate_networks(report, group)
            _check_mislabelled(report, engine, group, fix=fix)
        else:
            _check_orphan(report, engine, group, fix=fix, now=now)

    lost = {stack.owner for stack in group_lost([i for i in found if i.owner != mine])}
    for owner, owned in others.items():
        if owner in lost:
            _report_lost_home(report, owner, owned)
        else:
            _report_not_ours(report, owner, owned)
    _check_cross_attached(report, engine, [i for i in found if i.owner == mine], fix=fix)


def _check_cross_attached(
    report: DoctorReport, engine: Engine, mine: list[Resource], *, fix: bool
) -> None:
    """This home's containers attached to a network of another of its instances (an external
    network, or a `docker network connect`): disconnected with --fix, nothing removed."""
    networks = {i.resource_id or i.name: i for i in mine if i.kind == "network"}
    containers = {i.resource_id: i for i in mine if i.kind == "container" and i.resource_id}
    if not networks or not containers:
        return
    for network_id, container_id in ownership.network_attachments(engine, list(networks)):
        network = networks[network_id]
        container = next((c for cid, c in containers.items() if container_id.startswith(cid)), None)
        if container is None or container.instance_id == network.instance_id:
            continue
        problem = Problem(
            "cross-attached",
            container.instance_id,
            f"container {container.name} is attached to network {network.name} of instance "
            f"{network.instance_id}; `ktrdr sandbox doctor --fix` disconnects it",
            fixable=True,
        )
        report.problems.append(problem)
        if not fix:
            continue
        try:
            proc.run(
                engine.argv("network", "disconnect", "-f", network_id, container_id),
                timeout=60,
                what="docker network disconnect",
            )
        except SandboxError as e:
            problem.detail += f"; fix failed: {e}"
        else:
            problem.fixed = f"disconnected {container.name} from {network.name}"


def _check_duplicate_networks(report: DoctorReport, group: _InstanceResources) -> None:
    counts: dict[str, int] = {}
    for item in group.items:
        if item.kind == "network":
            counts[item.name] = counts.get(item.name, 0) + 1
    for name, count in sorted(counts.items()):
        if count > 1:
            report.problems.append(
                Problem(
                    "duplicate-network",
                    group.instance_id,
                    f"network {name} exists {count} times (two starts at once); "
                    f"`ktrdr sandbox up {group.instance_id}` repairs it (volumes kept)",
                )
            )


def _check_mislabelled(
    report: DoctorReport, engine: Engine, group: _InstanceResources, *, fix: bool
) -> None:
    """Resources labelled as this instance's but in another compose project: what a start with
    an edited project name made (it took over another instance's network and containers).
    Containers and networks are removed (the rightful instance's `up` recreates them); volumes
    hold data and are only reported."""
    own_project = project_name(group.instance_id, group.owner)
    wrong = [i for i in group.items if i.project and i.project != own_project]
    if not wrong:
        return
    listed = ", ".join(f"{i.kind} {i.name} (project {i.project})" for i in wrong[:4])
    problem = Problem(
        "mislabelled",
        group.instance_id,
        f"{len(wrong)} resource(s) labelled as this instance's are in another compose project: "
        f"{listed}; `ktrdr sandbox doctor --fix` removes the containers and networks (volumes "
        "kept), then `ktrdr sandbox up` in each instance recreates its own",
        fixable=any(i.kind != "volume" for i in wrong),
    )
    report.problems.append(problem)
    if not fix or not problem.fixable:
        return
    done: list[str] = []
    try:
        containers = [i.resource_id or i.name for i in wrong if i.kind == "container"]
        if containers:
            proc.run(engine.argv("rm", "-f", *containers), timeout=120, what="docker rm")
            done.append(f"{len(containers)} container(s)")
        for network in (i for i in wrong if i.kind == "network"):
            attached = ownership.remove_network_with_its_containers(
                engine, network.resource_id or network.name
            )
            done.append(f"network {network.name} (and {len(attached)} attached container(s))")
    except SandboxError as e:
        problem.detail += f"; fix stopped: {e}"
        return
    kept = [i.name for i in wrong if i.kind == "volume"]
    problem.fixed = f"removed {', '.join(done)}" + (
        f"; volumes kept: {', '.join(kept)}" if kept else ""
    )


def _check_orphan(
    report: DoctorReport,
    engine: Engine,
    group: _InstanceResources,
    *,
    fix: bool,
    now: Callable[[], float],
) -> None:
    root = _unregistered_root(group)
    if root is not None:
        report.problems.append(
            Problem(
                "unregistered",
                group.instance_id,
                f"this home's instance at {root} is not in the registry (its resources are "
                "kept): run `ktrdr sandbox init` there",
                severity="warning",
            )
        )
        return
    if not any(i.kind == "container" for i in group.items):
        ages = [ownership.created_at(engine, i.kind, i.name) for i in group.items]
        if any(a is None or now() - a < ORPHAN_GRACE_S for a in ages):
            return  # may be an `up`/`destroy` in flight; look again later
    problem = Problem(
        "orphan",
        group.instance_id,
        f"this home's instance is gone (not registered, no checkout): {group.names()}",
        fixable=True,
    )
    report.problems.append(problem)
    if not fix:
        return
    try:
        retry_once(partial(compose.down, engine, group.instance_id, None, volumes=True))
        left = ownership.leftovers(engine, group.instance_id)
    except SandboxError as e:
        problem.detail += f"; fix failed: {e}"
        return
    if left:
        problem.detail += f"; still present: {', '.join(left)}"
    else:
        problem.fixed = f"removed {len(group.items)} resource(s) by owner and instance label"


def _report_lost_home(report: DoctorReport, owner: str, groups: list[_InstanceResources]) -> None:
    """Stacks of a home whose directory is gone (or holds another id now): one line per stack
    with the path it had, what it holds and the two explicit ways out (lost_homes)."""

    for group in groups:
        first = group.items[0]
        stack = LostStack(owner, first.owner_home, group.instance_id, "", group.items)
        checkout = next((i.checkout or i.working_dir for i in group.items if i.checkout), "")
        adopt = f"`ktrdr sandbox adopt {checkout}` takes it into this home (volumes kept), or "
        report.problems.append(
            Problem(
                "lost-home",
                group.instance_id,
                f"its home {first.owner_home} (id {owner}) is gone; checkout "
                f"{checkout or '(not recorded)'}; holds {stack.holds()}: "
                f"{adopt if checkout else ''}`ktrdr sandbox doctor --remove-lost {owner}` "
                "removes everything of that home; nothing is done without one of them",
                severity="warning",
            )
        )


def _report_not_ours(report: DoctorReport, owner: str, groups: list[_InstanceResources]) -> None:
    """Another home's resources (or unlabelled legacy ones): one line per owner, left alone."""
    count = sum(len(g.items) for g in groups)
    ids = ", ".join(sorted({g.instance_id for g in groups}))
    if owner:
        home = next((i.owner_home for g in groups for i in g.items if i.owner_home), "")
        subject = f"KTRDR_HOME {home}" if home else f"home {owner}"
        detail = (
            f"{count} resource(s) of instance(s) {ids} belong to {subject}; "
            "not this home's: never touched"
        )
        report.problems.append(Problem("other-home", subject, detail, severity="info"))
        return
    report.problems.append(
        Problem(
            "legacy",
            "no owner label",
            f"{count} resource(s) of instance(s) {ids} carry no owner label (made before owner "
            "labels): never touched; if they are yours, `docker compose -p <project> down` "
            "removes them",
            severity="info",
        )
    )

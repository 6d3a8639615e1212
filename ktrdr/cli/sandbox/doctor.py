"""`ktrdr sandbox doctor [--fix]`: reconcile registry, Docker and filesystem; check the host.

What is checked, and what `--fix` does about it (never deleting a user's files):
- registry unreadable/corrupt → reported only (the file is left as it is);
- dead `creating` claims (create killed) → the worktree that create made is removed (git knows it
  as a linked worktree of the claim's repo, so it is ours: the path did not exist before the
  claim), its new branch deleted with `git branch -d` (only when fully merged, so no commit is
  lost), and only then is the entry dropped (record, undo, drop: a kill in between is safe);
- stale entries (path or .env.sandbox gone) → `prune`: leftovers removed by label, entry dropped;
- two entries holding one slot (a hand-edited registry) → reported only: the user picks which
  instance to destroy;
- `.env.sandbox` disagreeing with the registry slot / port map → port, slot and id lines
  rewritten in place; secrets and other lines kept (not while its slot is shared);
- Docker resources, sorted by their `ktrdr.owner` label (the home id):
  - this home's, of a registered instance: never orphans, running or stopped (a stopped
    instance's volumes are its data); a network name held twice is reported (`up` repairs it);
  - this home's, instance not registered but its checkout still holds its `.env.sandbox`: an
    *unregistered* instance (lost entry): reported, never touched;
  - this home's, instance gone: orphans, removed by owner and instance label with --fix
    (volumes/networks without containers only once older than ORPHAN_GRACE_S, so a concurrent
    `up`/`destroy` is never raced);
  - another home's: reported as belonging to that home (severity info), never touched;
  - no owner label (legacy, or made by hand): reported, never touched;
- host: docker missing, engine unreachable, Compose v2 missing, low disk, low memory, low
  inotify limits (raised with --fix when writable).
Severity `error` makes the exit code 1 until fixed; `warning` (host capacity) and `info` (what
belongs to others) are reported only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from ktrdr.cli.sandbox import compose as compose_types
from ktrdr.cli.sandbox import instances, proc, registry, worktree
from ktrdr.cli.sandbox.errors import SandboxError
from ktrdr.cli.sandbox.home import ktrdr_home
from ktrdr.cli.sandbox.instance import owner_variables, project_name, read_env, write_env_file
from ktrdr.cli.sandbox.listing import stale_reason
from ktrdr.cli.sandbox.ports import ports_for_slot
from ktrdr.cli.sandbox.registry import Entry
from ktrdr.envfile import SANDBOX_ENV_FILENAME

Severity = Literal["error", "warning", "info"]
T = TypeVar("T")
ORPHAN_GRACE_S = 60.0
MIN_FREE_DISK = 5 * 1024**3
MIN_AVAILABLE_MEMORY = 2 * 1024**3
INOTIFY_LIMITS = {"max_user_watches": (65536, 524288), "max_user_instances": (256, 1024)}


@dataclass
class Problem:
    kind: str
    subject: str
    detail: str
    severity: Severity = "error"
    fixed: str | None = None
    fixable: bool = False  # `doctor --fix` repairs this kind (the summary offers it only then)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "severity": self.severity,
            "fixed": self.fixed,
            "fixable": self.fixable,
        }


@dataclass
class DoctorReport:
    fix: bool
    problems: list[Problem] = field(default_factory=list)
    instances_checked: int = 0
    registry_checked: bool = True  # False: the registry could not be read
    docker_checked: bool = True  # False: no engine, so no label was looked at

    @property
    def open(self) -> list[Problem]:
        return [p for p in self.problems if p.fixed is None]

    @property
    def healthy(self) -> bool:
        return not any(p.severity == "error" for p in self.open)

    @property
    def actions(self) -> list[str]:
        return [f"{p.subject}: {p.fixed}" for p in self.problems if p.fixed]

    def summary_line(self) -> str:
        """The verdict, naming only what was actually checked."""
        parts = [f"{self.instances_checked} instance(s)"] if self.registry_checked else []
        if self.docker_checked:
            parts.append("Docker labels")
        checked = ", ".join([*parts, "host"]) + " checked"
        skipped = [
            *([] if self.registry_checked else ["registry (unreadable)"]),
            *([] if self.docker_checked else ["Docker resources (no engine)"]),
        ]
        if skipped:
            checked += f"; not checked: {', '.join(skipped)}"
        warnings = sum(1 for p in self.open if p.severity == "warning")
        others = sum(1 for p in self.open if p.severity == "info")
        if others:
            checked += f"; {others} note(s) on what others own, left alone"
        if self.healthy and warnings:
            return f"doctor: no errors, {warnings} warning(s) to look at ({checked})"
        if self.healthy:
            return f"doctor: healthy ({checked})"
        fixable = sum(1 for p in self.open if p.fixable)
        fix_hint = (
            f"; `ktrdr sandbox doctor --fix` repairs {fixable} of them"
            if fixable and not self.fix
            else ""
        )
        problems = sum(1 for p in self.open if p.severity != "info")
        return f"doctor: {problems} problem(s) ({checked}){fix_hint}"

    def to_json(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "fix": self.fix,
            "instances_checked": self.instances_checked,
            "registry_checked": self.registry_checked,
            "docker_checked": self.docker_checked,
            "problems": [p.to_json() for p in self.problems],
            "actions": self.actions,
        }


@dataclass(frozen=True)
class HostPaths:
    """Where host facts are read; tests pass stand-in files for /proc."""

    meminfo: Path = Path("/proc/meminfo")
    inotify_dir: Path = Path("/proc/sys/fs/inotify")


def run_doctor(*, fix: bool, host: HostPaths | None = None) -> DoctorReport:
    report = DoctorReport(fix=fix)
    engine = _check_engine(report)
    report.docker_checked = engine
    try:
        entries = registry.load()
    except SandboxError as e:
        report.problems.append(Problem("registry", str(registry.registry_path()), str(e)))
        report.registry_checked = False
        entries = None
    if entries is not None:
        _check_dead_claims(report, entries, fix=fix)
        _check_interrupted_destroys(report, entries)
        _check_stale(report, entries, fix=fix, engine=engine)
        current = registry.load() if fix else entries  # what the fixes above left
        shared = _check_shared_slots(report, entries, current)
        _check_env_drift(report, current, fix=fix, shared_slots=shared)
        if engine:
            _check_docker_resources(report, current, fix=fix)
        report.instances_checked = len(current)
    _check_host(report, host or HostPaths(), fix=fix, engine=engine)
    return report


# --- engine ----------------------------------------------------------------------------------


def _check_engine(report: DoctorReport) -> bool:
    from ktrdr.cli.sandbox import compose

    if shutil.which("docker") is None:
        report.problems.append(
            Problem("host", "docker", "docker CLI not installed: run `make docker`")
        )
        return False
    if not compose.engine_reachable():
        report.problems.append(
            Problem(
                "host",
                "docker engine",
                f"not reachable at {compose.engine_host()}: start Docker (`make docker`)",
            )
        )
        return False
    result = proc.run(["docker", "compose", "version", "--short"], timeout=15, check=False)
    if result.returncode != 0:
        report.problems.append(
            Problem("host", "docker compose", "Compose v2 plugin missing: run `make docker`")
        )
        return False
    return True


# --- registry vs filesystem ------------------------------------------------------------------


def _check_dead_claims(report: DoctorReport, entries: dict[str, Entry], *, fix: bool) -> None:
    """A killed create never started containers (`up` refuses a claim), so reaping it is
    undoing its worktree and branch, then dropping the record (in that order)."""
    problems: dict[str, Problem] = {}
    for entry in entries.values():
        if not entry.is_dead_claim():
            continue
        problems[entry.instance_id] = Problem(
            "dead-claim",
            entry.instance_id,
            f"create did not finish (process {entry.pid} is gone); slot {entry.slot} held",
            fixable=True,
        )
        report.problems.append(problems[entry.instance_id])
    if not fix or not problems:
        return
    for instance_id, done in instances.reap_dead_claims_by_id().items():
        problem = problems.get(instance_id)
        if problem is not None:
            undone = "; ".join(done) or "nothing to undo"
            problem.fixed = f"{undone}; entry dropped, slot {entries[instance_id].slot} freed"


def _check_interrupted_destroys(report: DoctorReport, entries: dict[str, Entry]) -> None:
    """`destroying` with the instance still on disk: a destroy stopped midway (or running now).
    Finishing it would delete a worktree, which only the user may ask for."""
    for entry in entries.values():
        if entry.state == "destroying" and stale_reason(entry) is None:
            report.problems.append(
                Problem(
                    "destroy-unfinished",
                    entry.instance_id,
                    f"a destroy did not finish; slot {entry.slot} stays claimed: rerun "
                    f"`ktrdr sandbox destroy {entry.instance_id}`",
                    severity="warning",
                )
            )


def _worktrees(repo: Path) -> list[worktree.WorktreeInfo]:
    try:
        return worktree.list_worktrees(repo)
    except SandboxError:
        return []


def _check_stale(
    report: DoctorReport, entries: dict[str, Entry], *, fix: bool, engine: bool
) -> None:
    stale = {
        e.instance_id: reason for e in entries.values() if (reason := stale_reason(e)) is not None
    }
    problems: dict[str, Problem] = {}
    for instance_id, reason in stale.items():
        if entries[instance_id].is_dead_claim():
            continue  # already reported as a dead claim; pruned below
        problems[instance_id] = Problem("stale-entry", instance_id, reason, fixable=True)
        report.problems.append(problems[instance_id])
    if not fix or not stale:
        return
    try:
        results = retry_once(lambda: instances.prune(dry_run=False))
    except SandboxError as e:
        for item in report.problems:
            if item.subject in stale and item.fixed is None:
                item.detail += f"; fix failed: {e}"
            elif item.subject in stale:  # a dead claim whose worktree was undone
                item.detail += f"; entry kept: {e}"
                item.fixed = None
        return
    for pruned in results:
        instance_id = pruned.entry.instance_id
        problem = problems.get(instance_id)
        if problem is None:
            claims = [p for p in report.problems if p.subject == instance_id]
            problem = next((p for p in claims if p.kind == "dead-claim"), None)
            if problem is None:
                continue
            if pruned.removed:
                problem.fixed = f"{problem.fixed}; entry dropped, slot {pruned.entry.slot} freed"
            else:
                problem.fixed = None
                problem.detail += f"; entry kept: {pruned.note}"
            continue
        if pruned.removed:
            problem.fixed = f"entry dropped ({pruned.note}); slot {pruned.entry.slot} freed"
            if pruned.entry.kind == "worktree" and remove_empty_tree(pruned.entry.root):
                # Nothing of the user's was in it after all: drop the "kept" advice.
                note = pruned.note.replace(f"; {pruned.kept}", "") if pruned.kept else pruned.note
                problem.fixed = f"entry dropped ({note}); slot {pruned.entry.slot} freed"
                problem.fixed += f"; empty directory {pruned.entry.root} removed"
        else:
            problem.detail += f"; kept: {pruned.note}"


def remove_empty_tree(path: Path) -> bool:
    """Remove `path` when it holds nothing but empty directories (what Docker leaves when it
    recreates a deleted bind-mount source); True when removed. No file is ever deleted."""
    if not path.is_dir() or path.is_symlink():
        return False
    for directory, subdirs, files in os.walk(path, topdown=False):
        if files or any(Path(directory, d).is_symlink() for d in subdirs):
            return False
        try:
            os.rmdir(directory)
        except OSError:
            return False
    return True


def retry_once(action: Callable[[], T], *, pause: float = 2.0) -> T:
    """Docker refuses a removal already in progress elsewhere (e.g. a concurrent `down`);
    the second attempt usually finds the resource gone."""
    try:
        return action()
    except SandboxError:
        time.sleep(pause)
        return action()


def expected_env(entry: Entry) -> dict[str, str]:
    """The env-file lines the registry and the port map decide (everything but secrets)."""
    from ktrdr.cli.sandbox.home import home_id

    ports = ports_for_slot(entry.slot)
    owner = home_id()
    return {
        "COMPOSE_PROJECT_NAME": project_name(entry.instance_id, owner),
        "KTRDR_INSTANCE_ID": entry.instance_id,
        **owner_variables(owner=owner, owner_home=ktrdr_home(), checkout=entry.root),
        "KTRDR_SLOT": str(entry.slot),
        **ports.env_variables(),
        "KTRDR_API_URL": ports.urls()["api"],
    }


def env_drift(entry: Entry) -> dict[str, tuple[str | None, str]]:
    """key -> (found, expected) for every line of .env.sandbox that disagrees."""
    found = read_env(entry.root / SANDBOX_ENV_FILENAME)
    return {k: (found.get(k), v) for k, v in expected_env(entry).items() if found.get(k) != v}


def rewrite_env(path: Path, updates: dict[str, str]) -> None:
    """Replace `KEY=…` lines in place (appending missing keys); comments and secrets kept."""
    lines = path.read_text(encoding="utf-8").splitlines()
    pending = dict(updates)
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#") and key in pending:
            lines[i] = f"{key}={pending.pop(key)}"
    lines += [f"{k}={v}" for k, v in pending.items()]
    write_env_file(path.parent, "\n".join(lines) + "\n")


def _slot_holders(entries: dict[str, Entry]) -> dict[int, list[str]]:
    """Slots held by more than one entry (only a hand-edited or corrupt registry has them)."""
    holders: dict[int, list[str]] = {}
    for entry in entries.values():
        holders.setdefault(entry.slot, []).append(entry.instance_id)
    return {slot: sorted(ids) for slot, ids in holders.items() if len(ids) > 1}


def _check_shared_slots(
    report: DoctorReport, before: dict[str, Entry], after: dict[str, Entry]
) -> set[int]:
    """Report slots held twice; the slots still shared after the fixes are returned. Not fixable
    here: which instance keeps the slot (and its ports and data) is the user's choice."""
    still = _slot_holders(after)
    for slot, ids in sorted(_slot_holders(before).items()):
        names = ", ".join(ids[:-1]) + f" and {ids[-1]}"
        problem = Problem(
            "slot-conflict",
            f"slot {slot}",
            f"slot {slot} is held by {names}: destroy one of them (or fix the registry)",
        )
        report.problems.append(problem)
        if slot not in still:
            problem.fixed = "no longer shared once stale entries were dropped"
    return set(still)


def _check_env_drift(
    report: DoctorReport, entries: dict[str, Entry], *, fix: bool, shared_slots: set[int]
) -> None:
    for entry in entries.values():
        env_path = entry.root / SANDBOX_ENV_FILENAME
        if entry.state != "ready" or not env_path.is_file():
            continue
        drift = env_drift(entry)
        if not drift:
            continue
        owner, _ = drift.get("KTRDR_OWNER", (None, ""))
        if owner:  # written by another home: rewriting it would take that home's instance over
            home = read_env(env_path).get("KTRDR_OWNER_HOME") or f"home {owner}"
            report.problems.append(
                Problem(
                    "other-home",
                    entry.instance_id,
                    f"{env_path} belongs to KTRDR_HOME {home}: not rewritten; destroy the entry "
                    "here (`ktrdr sandbox prune` after moving it) or use that home",
                )
            )
            continue
        shown = ", ".join(f"{k}={found} (expected {want})" for k, (found, want) in drift.items())
        problem = Problem("env-drift", entry.instance_id, f".env.sandbox: {shown}")
        report.problems.append(problem)
        problem.fixable = entry.slot not in shared_slots
        if entry.slot in shared_slots:
            # Rewriting would give this instance the ports of the other holder of its slot.
            problem.detail += f"; not rewritten while slot {entry.slot} is shared"
        elif fix:
            rewrite_env(env_path, {k: want for k, (_, want) in drift.items()})
            problem.fixed = f"rewrote {', '.join(drift)} (secrets kept)"


# --- Docker resources ------------------------------------------------------------------------


@dataclass
class _InstanceResources:
    owner: str
    instance_id: str
    items: list[compose_types.Resource] = field(default_factory=list)

    def names(self) -> str:
        return ", ".join(f"{i.kind} {i.name}" for i in self.items)


def _created_at(kind: str, name: str) -> float | None:
    result = proc.run(
        ["docker", kind, "inspect", "--format", "{{json .CreatedAt}}", name],
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


def _check_docker_resources(
    report: DoctorReport,
    entries: dict[str, Entry],
    *,
    fix: bool,
    now: Callable[[], float] = time.time,
) -> None:
    """Sort every ktrdr-labelled resource on the engine by owner. Only this home's resources
    whose instance is gone are orphans (removed with --fix); another home's are reported as
    belonging to it and resources without an owner label as legacy, neither ever touched."""
    from ktrdr.cli.sandbox import compose
    from ktrdr.cli.sandbox.home import home_id

    mine = home_id()
    groups: dict[tuple[str, str], _InstanceResources] = {}
    for item in compose.resources(["--filter", f"label={compose.INSTANCE_LABEL}"]):
        key = (item.owner, item.instance_id)
        groups.setdefault(key, _InstanceResources(*key)).items.append(item)
    others: dict[str, list[_InstanceResources]] = {}
    for (owner, instance_id), group in sorted(groups.items()):
        if owner != mine:
            others.setdefault(owner, []).append(group)
        elif instance_id in entries:
            _check_duplicate_networks(report, group)
        else:
            _check_orphan(report, group, fix=fix, now=now)
    for owner, owned in others.items():
        _report_not_ours(report, owner, owned)


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


def _check_orphan(
    report: DoctorReport, group: _InstanceResources, *, fix: bool, now: Callable[[], float]
) -> None:
    from ktrdr.cli.sandbox import compose

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
        ages = [_created_at(i.kind, i.name) for i in group.items]
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
        retry_once(partial(compose.down, group.instance_id, None, volumes=True))
        left = compose.leftovers(group.instance_id)
    except SandboxError as e:
        problem.detail += f"; fix failed: {e}"
        return
    if left:
        problem.detail += f"; still present: {', '.join(left)}"
    else:
        problem.fixed = f"removed {len(group.items)} resource(s) by owner and instance label"


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


# --- host ------------------------------------------------------------------------------------


def _check_host(report: DoctorReport, host: HostPaths, *, fix: bool, engine: bool) -> None:
    for path in _disk_paths(engine):
        usage = shutil.disk_usage(path)
        if usage.free < MIN_FREE_DISK:
            report.problems.append(
                Problem(
                    "host",
                    f"disk {path}",
                    f"{usage.free / 1024**3:.1f} GiB free (< {MIN_FREE_DISK / 1024**3:.0f}); "
                    "run `docker system prune` / `ktrdr sandbox destroy` unused instances",
                    severity="warning",
                )
            )
    available = _mem_available(host.meminfo)
    if available is not None and available < MIN_AVAILABLE_MEMORY:
        report.problems.append(
            Problem(
                "host",
                "memory",
                f"{available / 1024**3:.1f} GiB available; each instance needs about 1 GiB: "
                "stop unused instances (`ktrdr sandbox down`)",
                severity="warning",
            )
        )
    for name, (minimum, target) in INOTIFY_LIMITS.items():
        _check_inotify(report, host.inotify_dir / name, minimum, target, fix=fix)


def _disk_paths(engine: bool) -> list[Path]:
    paths = {_existing(ktrdr_home())}
    if engine:
        result = proc.run(
            ["docker", "info", "--format", "{{.DockerRootDir}}"], timeout=15, check=False
        )
        root = result.stdout.strip()
        if result.returncode == 0 and root and Path(root).exists():
            paths.add(Path(root))
    return sorted(paths)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mem_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_inotify(
    report: DoctorReport, path: Path, minimum: int, target: int, *, fix: bool
) -> None:
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    if value >= minimum:
        return
    problem = Problem(
        "host",
        f"inotify {path.name}",
        f"{value} (< {minimum}): hot reload in several instances runs out of watches; "
        f"`sysctl fs.inotify.{path.name}={target}`",
        severity="warning",
        fixable=os.access(path, os.W_OK),
    )
    report.problems.append(problem)
    if fix:
        try:
            path.write_text(f"{target}\n")
            problem.fixed = f"raised to {target} (until reboot)"
        except OSError as e:
            problem.detail += f"; cannot raise it here ({e.strerror or e}): run it as root"

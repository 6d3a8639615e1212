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
- host: docker missing, engine unreachable, Compose v2 missing (asked of engine/queries.py),
  low disk, low memory (the threshold `up` warns at), low inotify limits (raised with --fix when
  writable) (base/host.py).
Severity `error` makes the exit code 1 until fixed; `warning` (host capacity) and `info` (what
belongs to others) are reported only.

The checks live in doctor/checks.py (registry, files) and doctor/resources.py (Docker labels);
the report in doctor/report.py. Doctor builds no docker argv itself: it asks engine/queries.py and
engine/ownership.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from ktrdr.cli.sandbox.base import host as host_facts
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.base.host import HostPaths
from ktrdr.cli.sandbox.doctor.checks import (
    check_dead_claims,
    check_env_drift,
    check_interrupted_destroys,
    check_shared_slots,
    check_stale,
)
from ktrdr.cli.sandbox.doctor.report import DoctorReport, Problem
from ktrdr.cli.sandbox.doctor.resources import check_docker_resources
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import owned_process, registry
from ktrdr.cli.sandbox.home.directory import ktrdr_home
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.overview import listing


def run_doctor(*, fix: bool, host: HostPaths | None = None) -> DoctorReport:
    report = DoctorReport(fix=fix)
    default = Engine()
    engine_ok = _check_engine(report, default)
    report.docker_checked = engine_ok
    try:
        entries = registry.load()
    except SandboxError as e:
        report.problems.append(Problem("registry", str(registry.registry_path()), str(e)))
        report.registry_checked = False
        entries = None
    if entries is not None:
        check_dead_claims(report, entries, fix=fix)
        check_interrupted_destroys(report, entries)
        check_stale(report, entries, fix=fix, engine=engine_ok)
        current = registry.load() if fix else entries  # what the fixes above left
        shared = check_shared_slots(report, entries, current)
        check_env_drift(report, current, fix=fix, shared_slots=shared)
        if engine_ok:
            check_docker_resources(report, default, current, fix=fix)
        _check_other_engines(report, current, fix=fix)
        _check_companions(report, fix=fix)
        report.instances_checked = len(current)
    _check_host(report, host or HostPaths(), fix=fix, engine=default if engine_ok else None)
    return report


# --- engine ----------------------------------------------------------------------------------


def _check_engine(report: DoctorReport, default: Engine) -> bool:
    if not engine.cli_installed():
        report.problems.append(
            Problem("host", "docker", "docker CLI not installed: run `make docker`")
        )
        return False
    if not engine.engine_reachable(default):
        report.problems.append(
            Problem(
                "host",
                "docker engine",
                f"not reachable at {engine.engine_host(default)}: start Docker (`make docker`)",
            )
        )
        return False
    if not engine.compose_plugin_works(default):
        report.problems.append(
            Problem("host", "docker compose", "Compose v2 plugin missing: run `make docker`")
        )
        return False
    return True


def _check_other_engines(report: DoctorReport, entries: dict[str, Entry], *, fix: bool) -> None:
    """Each Docker context an instance lives on: reachable, and its labelled resources
    reconciled like the default engine's (an orphan is of an instance registered nowhere)."""
    engines = listing.engines_of(entries.values())
    for context in sorted(c for c in engines if c):
        if _engine_answers(report, engines[context]):
            check_docker_resources(report, engines[context], entries, fix=fix)


def _check_companions(report: DoctorReport, *, fix: bool) -> None:
    """SSH forwarders and compose watches of remote instances that no record accounts for (a
    killed `up`, a lost state dir): they hold local ports, so they are stopped with --fix."""

    for orphan in owned_process.orphans(owned_process.state_root()):
        problem = Problem(
            "process",
            f"pid {', '.join(map(str, orphan.pids))}",
            f"orphaned companion of a remote instance ({orphan.cmdline[:120]}): no live record "
            f"{orphan.record_path} accounts for it",
            fixable=True,
        )
        report.problems.append(problem)
        if fix:
            owned_process.stop_orphan(orphan)
            problem.fixed = "stopped"


def _engine_answers(report: DoctorReport, other: Engine) -> bool:
    held, context = other.label, other.context
    try:
        where = engine.engine_host(other)
        reachable = engine.engine_reachable(other)
    except SandboxError as e:
        where, reachable = str(e), False
    if not reachable:
        report.problems.append(
            Problem(
                "engine",
                held,
                f"{where} does not answer: its instances' state is unknown; check the "
                f"connection (`docker --context {context} info`)",
            )
        )
    return reachable


# --- host ------------------------------------------------------------------------------------


def _check_host(
    report: DoctorReport, paths: HostPaths, *, fix: bool, engine: Engine | None
) -> None:
    """`engine`: the default engine when it answered (None: not asked)."""
    for path in _disk_paths(engine):
        free = host_facts.free_disk(path)
        if free < host_facts.MIN_FREE_DISK:
            report.problems.append(
                Problem(
                    "host",
                    f"disk {path}",
                    f"{free / host_facts.GIB:.1f} GiB free "
                    f"(< {host_facts.MIN_FREE_DISK / host_facts.GIB:.0f}); "
                    "run `docker system prune` / `ktrdr sandbox destroy` unused instances",
                    severity="warning",
                )
            )
    memory = host_facts.memory_warning(paths.meminfo)
    if memory is not None:
        report.problems.append(Problem("host", "memory", memory, severity="warning"))
    for name, (minimum, target) in host_facts.INOTIFY_LIMITS.items():
        _check_inotify(report, paths.inotify_dir / name, minimum, target, fix=fix)


def _disk_paths(default: Engine | None) -> list[Path]:
    """This home's filesystem, and the engine's (where images and volumes grow)."""
    paths = {host_facts.existing_parent(ktrdr_home())}
    docker_root = engine.docker_root_dir(default) if default is not None else None
    if docker_root is not None:
        paths.add(docker_root)
    return sorted(paths)


def _check_inotify(
    report: DoctorReport, path: Path, minimum: int, target: int, *, fix: bool
) -> None:
    value = host_facts.inotify_limit(path)
    if value is None or value >= minimum:
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
            host_facts.raise_inotify_limit(path, target)
            problem.fixed = f"raised to {target} (until reboot)"
        except OSError as e:
            problem.detail += f"; cannot raise it here ({e.strerror or e}): run it as root"

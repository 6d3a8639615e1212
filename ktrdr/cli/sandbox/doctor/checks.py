"""Doctor's checks of the registry against the filesystem: dead `creating` claims, unfinished
destroys, stale entries (pruned with --fix), slots held twice, and `.env.sandbox` files that
disagree with the registry and the port map (rewritten in place with --fix, secrets kept)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.doctor.report import DoctorReport, Problem
from ktrdr.cli.sandbox.home.instance import read_env, write_env_file
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances import identity
from ktrdr.cli.sandbox.lifecycle import prune
from ktrdr.cli.sandbox.overview.listing import stale_reason
from ktrdr.cli.sandbox.provision import claims
from ktrdr.envfile import SANDBOX_ENV_FILENAME

T = TypeVar("T")


def check_dead_claims(report: DoctorReport, entries: dict[str, Entry], *, fix: bool) -> None:
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
    for instance_id, done in claims.reap_dead_claims_by_id().items():
        problem = problems.get(instance_id)
        if problem is not None:
            undone = "; ".join(done) or "nothing to undo"
            problem.fixed = f"{undone}; entry dropped, slot {entries[instance_id].slot} freed"


def check_interrupted_destroys(report: DoctorReport, entries: dict[str, Entry]) -> None:
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


def check_stale(
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
        results = retry_once(lambda: prune.prune(dry_run=False))
    except SandboxError as e:
        for item in report.problems:
            if item.subject in stale and item.fixed is None:
                item.detail += f"; fix failed: {e}"
            elif item.subject in stale:  # a dead claim whose worktree was undone
                item.detail += f"; entry kept: {e}"
                item.fixed = None
        return
    for pruned in results:
        problem = problems.get(pruned.entry.instance_id)
        if problem is not None:
            _record_pruned(problem, pruned)
        else:
            _record_pruned_claim(report, pruned)


def _record_pruned_claim(report: DoctorReport, pruned: prune.PrunedEntry) -> None:
    """A dead claim (reported by check_dead_claims) that prune dropped, or kept."""
    claims = [p for p in report.problems if p.subject == pruned.entry.instance_id]
    problem = next((p for p in claims if p.kind == "dead-claim"), None)
    if problem is None:
        return
    if pruned.removed:
        problem.fixed = f"{problem.fixed}; entry dropped, slot {pruned.entry.slot} freed"
    else:
        problem.fixed = None
        problem.detail += f"; entry kept: {pruned.note}"


def _record_pruned(problem: Problem, pruned: prune.PrunedEntry) -> None:
    if not pruned.removed:
        problem.detail += f"; kept: {pruned.note}"
        return
    problem.fixed = f"entry dropped ({pruned.note}); slot {pruned.entry.slot} freed"
    if pruned.entry.kind == "worktree" and remove_empty_tree(pruned.entry.root):
        # Nothing of the user's was in it after all: drop the "kept" advice.
        note = pruned.note.replace(f"; {pruned.kept}", "") if pruned.kept else pruned.note
        problem.fixed = f"entry dropped ({note}); slot {pruned.entry.slot} freed"
        problem.fixed += f"; empty directory {pruned.entry.root} removed"


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


def env_drift(entry: Entry) -> dict[str, tuple[str | None, str]]:
    """key -> (found, expected) for every line of .env.sandbox that disagrees with the record."""
    return identity.drift(entry, read_env(entry.root / SANDBOX_ENV_FILENAME))


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
    """Slots held by more than one entry of one engine (only a hand-edited or corrupt registry
    has them; a local and a remote instance on slot 1 are fine)."""
    holders: dict[tuple[str, int], list[str]] = {}
    for entry in entries.values():
        holders.setdefault((entry.context or "", entry.slot), []).append(entry.instance_id)
    return {slot: sorted(ids) for (_, slot), ids in holders.items() if len(ids) > 1}


def check_shared_slots(
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


def check_env_drift(
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

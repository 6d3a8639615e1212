"""`ktrdr sandbox prune`: drop stale entries (directory or env file gone, dead create claims)
after their leftover containers and volumes are confirmed gone."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.registry import Entry
from ktrdr.cli.sandbox.instances import worktree
from ktrdr.cli.sandbox.instances.locate import from_entry
from ktrdr.cli.sandbox.lifecycle.destroy import forget_lock_files, teardown_containers
from ktrdr.cli.sandbox.overview.listing import (
    stale_reason,
)
from ktrdr.envfile import SANDBOX_ENV_FILENAME


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
            if gone:
                forget_lock_files(entry.instance_id)
        kept = _kept_worktree(entry) if gone else ""
        note = f"{note}; {kept}" if kept else note
        pruned.append(PrunedEntry(entry, reason, removed=gone, note=note, kept=kept))
    return pruned


def _kept_worktree(entry: Entry) -> str:
    """Prune drops only the entry: a worktree still on disk may hold uncommitted work, so it is
    left for the user, who is told how to delete it."""
    if entry.kind != "worktree" or not entry.root.is_dir():
        return ""

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

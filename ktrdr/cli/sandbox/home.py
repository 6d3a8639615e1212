"""Where KTRDR keeps its state: $KTRDR_HOME, default ~/.ktrdr (registry, shared data,
evidence)."""

from __future__ import annotations

import os
from pathlib import Path


def ktrdr_home() -> Path:
    """$KTRDR_HOME (with `~` expanded), or ~/.ktrdr; always an absolute path.

    A relative KTRDR_HOME is resolved against the current directory the first time it is read
    and written back to the environment as that absolute path: otherwise the registry would
    move with the directory a command runs in (and differ again in a child process started with
    another cwd), so `list` in one checkout would not see an instance created from another.
    """
    configured = os.environ.get("KTRDR_HOME")
    if not configured:
        return Path.home() / ".ktrdr"
    home = Path(configured).expanduser()
    if not home.is_absolute():
        home = Path.cwd() / home
        os.environ["KTRDR_HOME"] = str(home)
    return home


def evidence_dir(instance_id: str) -> Path:
    """Evidence bundles live outside the worktree: `destroy` removes the worktree, and the
    evidence of what an instance did must outlive it."""
    return ktrdr_home() / "evidence" / instance_id


def unused_evidence_path(instance_id: str, stem: str, suffix: str = "") -> Path:
    """`<evidence dir>/<stem><suffix>`, or with `-2`, `-3`… appended to the stem when taken:
    names carry a one-second stamp, and nothing kept there may be replaced."""
    directory = evidence_dir(instance_id)
    candidate, counter = directory / f"{stem}{suffix}", 2
    while candidate.exists():
        candidate, counter = directory / f"{stem}-{counter}{suffix}", counter + 1
    return candidate

"""A hook's worktree name made into a valid `create` NAME.

A person typing `ktrdr sandbox create föö` gets a refusal with a suggestion; an agent tool that
names a worktree `feature/auth` or `agent-3f2a…` cannot answer one, so the hook takes the
suggestion itself: the same rules as `create`, applied rather than asked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ktrdr.cli.sandbox.home.instance import max_name_length, suggest_name


def instance_name(raw: str, checkout: Path) -> str:
    """`raw` as a NAME `create` accepts in `checkout`: other characters as '-', cut to the
    checkout's length limit; a name with too little left is `agent-<hash of it>`."""
    limit = max_name_length(checkout.name)
    name = suggest_name(raw, max_length=limit)
    if name:
        return name
    digest = hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()
    return f"agent-{digest}"[: max(limit, 1)].rstrip("-")

"""`ktrdr sandbox …` commands: parse arguments, call the core modules, render the result."""

from __future__ import annotations

import click


@click.group()
def sandbox() -> None:
    """Isolated KTRDR stacks, one per git worktree (see docs/sandbox.md)."""

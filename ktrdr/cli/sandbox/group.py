"""The `ktrdr sandbox` Click group; command modules attach their commands to it."""

from __future__ import annotations

import click


@click.group()
def sandbox() -> None:
    """Isolated KTRDR stacks, one per git worktree, each on its own port slot.

    Typical loop: `ktrdr sandbox create NAME`, `cd` into it, `ktrdr sandbox up`, work and
    test, `ktrdr sandbox evidence`, `ktrdr sandbox destroy`. See docs/sandbox.md.
    """

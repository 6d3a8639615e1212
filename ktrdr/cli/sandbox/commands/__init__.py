"""The Click layer of `ktrdr sandbox`: the group and every command, each a thin parse → call the
core → render. Command modules import the core inside the command functions, so `ktrdr --help`
and `ktrdr sandbox list` load only what they use.

- instances.py: create, init, list, status, destroy, prune (render.py prints their results)
- stack.py: up, down, logs (gate_render.py shows the Startability Gate's progress and verdict)
- pause.py: pause, resume
- care.py: init-shared, test-e2e, evidence, doctor, db-env (hidden)
- mcp.py: mcp
- hooks.py: hook (what agent tools run: worktree hooks, setup/teardown), hooks install/uninstall
- journal.py: journal, and the group class that records every command that changes something
"""

from __future__ import annotations

import click

from ktrdr.cli.sandbox.commands.care import (
    adopt_command,
    db_env_command,
    doctor_command,
    evidence_command,
    init_shared_command,
    test_e2e_command,
)
from ktrdr.cli.sandbox.commands.hooks import hook_group, hooks_group
from ktrdr.cli.sandbox.commands.instances import (
    create_command,
    destroy_command,
    init_command,
    list_command,
    prune_command,
    status_command,
)
from ktrdr.cli.sandbox.commands.journal import JournaledGroup, journal_command
from ktrdr.cli.sandbox.commands.mcp import mcp_command
from ktrdr.cli.sandbox.commands.pause import pause, resume
from ktrdr.cli.sandbox.commands.stack import down, logs, up


@click.group(cls=JournaledGroup)
def sandbox() -> None:
    """Isolated KTRDR stacks, one per git worktree, each on its own port slot.

    Typical loop: `ktrdr sandbox create NAME`, `cd` into it, `ktrdr sandbox up`, work and
    test, `ktrdr sandbox evidence`, `ktrdr sandbox destroy`. See docs/sandbox.md.
    """


for _command in (
    create_command,
    init_command,
    list_command,
    status_command,
    destroy_command,
    prune_command,
    up,
    down,
    logs,
    pause,
    resume,
    init_shared_command,
    test_e2e_command,
    evidence_command,
    doctor_command,
    adopt_command,
    db_env_command,
    mcp_command,
    journal_command,
    hook_group,
    hooks_group,
):
    sandbox.add_command(_command)

"""The `ktrdr sandbox` group: isolated per-worktree KTRDR stacks.

Each command module attaches its commands to the group on import.
"""

from ktrdr.cli.sandbox import (
    care_commands,  # noqa: F401  # init-shared, test-e2e, evidence, doctor
    commands,  # noqa: F401  # registers commands on the group
    mcp_command,  # noqa: F401  # mcp (the SDK is imported only when it runs)
    pause_commands,  # noqa: F401  # pause, resume
    stack_commands,  # noqa: F401  # up, down, logs
)
from ktrdr.cli.sandbox.group import sandbox

__all__ = ["sandbox"]

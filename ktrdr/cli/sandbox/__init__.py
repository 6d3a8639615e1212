"""The `ktrdr sandbox` group: isolated per-worktree KTRDR stacks."""

from ktrdr.cli.sandbox.commands import sandbox

__all__ = ["sandbox"]

"""`ktrdr sandbox`: isolated per-worktree KTRDR stacks.

The core modules live here (no Click, no printing); the Click layer is the `commands` package.
This file imports nothing, so importing a core module never loads the commands.
"""

"""Making instances: slot allocation and claims that survive a kill, `create` (a new worktree)
and `init` (an existing checkout).

May import: base, slots, home, engine, instances, stack.
"""

"""Finding an instance: what the home recorded about it (identity), the one resolver from a NAME
or a directory to an `Instance` (locate), and the git plumbing of its worktree.

May import: base, slots, home, engine.
"""

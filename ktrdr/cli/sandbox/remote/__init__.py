"""Instances on an engine that sees neither this machine's disk nor its loopback (ssh://
contexts): the stack rewritten without binds, volumes filled and synced, ports forwarded.

May import: base, slots, home, engine, instances, stack.
"""

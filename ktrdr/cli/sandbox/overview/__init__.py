"""Read-only views of instances: `list` (registry plus one Docker query) and `status`.

May import: base, slots, home, engine, instances, stack, remote, gate.
"""

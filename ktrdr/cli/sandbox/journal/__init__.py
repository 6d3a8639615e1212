"""The journal of actions that changed something: the append-only file (log), what a record
holds and who acted (entry), and reading it back (query).

May import: base, slots, home, engine, instances.
"""

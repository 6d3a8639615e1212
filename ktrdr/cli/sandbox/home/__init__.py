"""What a KTRDR home keeps on disk: its directory, the registry, each instance's `.env.sandbox`
record, the per-instance locks, the shared data and the processes an instance owns.

May import: base, slots.
"""

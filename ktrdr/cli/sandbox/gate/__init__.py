"""The Startability Gate: its loop, checks, probes, state between rounds, what it gathers after a
failure and its report; and the health verdict `list` and `status` derive from the same probes.

May import: base, slots, home, engine.
"""

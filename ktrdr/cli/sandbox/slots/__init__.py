"""Slots and their ports: the one port table, the machine's slot range (KTRDR_SLOTS) and the
machine-wide slot locks that keep homes sharing one engine apart.

May import: base.
"""

"""The Docker engine as a value (`Engine`, handle.py) and every question asked of one directly:
whether it answers, labels and containers by owner, one container's logs, who owns what, and
stacks whose home is gone. Every call takes its Engine; nothing selects one globally.

May import: base, slots, home.
"""

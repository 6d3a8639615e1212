"""Running instances: up, down and logs (operations), the checks before a start (preflight),
destroy and prune.

May import: every package above it in the layout order (base … provision), policy included.
"""

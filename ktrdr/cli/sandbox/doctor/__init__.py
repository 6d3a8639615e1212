"""`ktrdr sandbox doctor`: reconciling the registry, the engine and the filesystem, and the host
checks; the report it renders.

May import: every package below mcp in the layout order.
"""

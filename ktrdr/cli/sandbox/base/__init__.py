"""Building blocks with no knowledge of instances: the error type, atomic state files, the one
subprocess call site, Ctrl-C holding, heartbeats, host facts, and the compose file read once.

May import: nothing of the sandbox (only ktrdr.errors and ktrdr.cli settings).
"""

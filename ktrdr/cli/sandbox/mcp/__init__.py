"""The MCP face: tool specs and argument checking, the handlers that call the same core as the
CLI, the scope a server may act on, the server itself and the config a client launches it with.

May import: every core package (everything but commands).
"""

"""The Docker-facing modules, looked up at call time.

Instance transactions (create, init, status, destroy, prune) and `list` reach the engine only
through these three functions, so unit tests put one stand-in in place of all of them
(tests/unit/sandbox/conftest.py) and run without an engine.
"""

from __future__ import annotations

from types import ModuleType


def engine() -> ModuleType:
    """engine/queries.py: the engine check and container queries by label."""
    from ktrdr.cli.sandbox.engine import queries as module

    return module


def ownership() -> ModuleType:
    """engine/ownership.py: owned resources, removal by label, slot markers."""
    from ktrdr.cli.sandbox.engine import ownership as module

    return module


def compose() -> ModuleType:
    """stack/compose.py: `docker compose` runs (here: taking a stack down)."""
    from ktrdr.cli.sandbox.stack import compose as module

    return module

"""Instance commands (create, init, list, status, destroy, prune): parse, call core, render."""

from __future__ import annotations

from ktrdr.cli.sandbox.group import sandbox  # noqa: F401  # commands attach here

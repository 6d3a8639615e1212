"""Numeric settings read from the environment (the tunables; documented in docs/sandbox.md)."""

from __future__ import annotations

import os


def seconds_from_env(name: str, default: float) -> float:
    """A positive number of seconds from `$name`, or `default` when unset or not a number."""
    value = os.environ.get(name, "")
    try:
        seconds = float(value) if value else default
    except ValueError:
        return default
    return seconds if seconds >= 0 else default

"""Whose resources a test looks at: a home's owner id, so a leftover check counts only what this
test's home made (another run may have left resources of the same instance id)."""

from __future__ import annotations

from pathlib import Path


def owner_of(home: Path) -> str:
    """The `ktrdr.owner` label value of the resources made with KTRDR_HOME=home."""
    return (home / "home-id").read_text(encoding="utf-8").strip()

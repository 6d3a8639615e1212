"""Fixtures shared by every test: no test touches the real home or the user's API settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.docker_fixtures", "tests.bystanders"]

TARGET_ENV_VARS = ("KTRDR_API_URL", "KTRDR_API_PORT", "KTRDR_HOME")


@pytest.fixture(autouse=True)
def test_slot_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests allocate from slots 90..99 (tests/support/slots.py), never from the user's range:
    the suite passes, and takes nothing, while the user's sandboxes hold any of slots 1..10."""
    from tests.support import slots

    monkeypatch.setenv("KTRDR_SLOTS", slots.TEST_SLOTS_TEXT)


@pytest.fixture(autouse=True)
def no_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output is measured as piped, whatever COLUMNS the runner has: a terminal's exported width,
    or the 80 that pytest-xdist's workers get."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True)
def isolated_ktrdr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in TARGET_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "ktrdr-home"
    monkeypatch.setenv("KTRDR_HOME", str(home))
    return home

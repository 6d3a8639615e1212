"""The slots the test suite takes: 90..99, never the user's.

The user's sandboxes (other homes on this machine) take their slots from KTRDR_SLOTS, 1..10
unless the machine widened it; every test and every CLI process a test starts allocates from
TEST_SLOTS instead, through the same setting (tests/conftest.py sets it for the tests, and each
subprocess harness that drops the caller's KTRDR_* variables adds it back with `env()`). So
`make test` neither waits for nor takes a slot the user's stacks hold, whether they run or not,
and no test has to skip because a port of slots 1..10 is busy. A machine whose own range reaches
into 90..99 shares those slots with the suite: keep KTRDR_SLOTS below 90 where tests run.

KTRDR_TEST_SLOTS moves the suite to another range of ten or more (for example 70-79), so two
test runs on one machine (two worktrees, two agents) never wait for each other's slots.
"""

from __future__ import annotations

import os

import pytest

from ktrdr.cli.sandbox.slots import slot_range

TEST_SLOTS_TEXT = os.environ.get("KTRDR_TEST_SLOTS") or "90-99"
TEST_SLOTS = slot_range.parse(TEST_SLOTS_TEXT)
if len(TEST_SLOTS) < 10:
    raise RuntimeError(f"KTRDR_TEST_SLOTS={TEST_SLOTS_TEXT}: the suite needs ten slots or more")
FIRST = TEST_SLOTS[0]


def env() -> dict[str, str]:
    """The variables a CLI subprocess of a test needs to allocate from TEST_SLOTS."""
    return {"KTRDR_SLOTS": TEST_SLOTS_TEXT}


def use_the_default_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests whose port probe is a stand-in (every port free) and whose engine is a
    stand-in: nothing on the machine is asked or taken, so they may show the default slots
    1..10 and their ports as the docs do."""
    monkeypatch.setenv("KTRDR_SLOTS", slot_range.DEFAULT)

"""The heartbeat line of long commands (down, destroy) without a spinner."""

from __future__ import annotations

import time

import pytest

from ktrdr.cli.sandbox.base.heartbeat import heartbeat


@pytest.mark.timing
def test_a_long_step_says_what_it_is_doing_until_it_ends() -> None:
    said: list[str] = []
    with heartbeat("stopping ktrdr--a", said.append, every=0.05):
        deadline = time.monotonic() + 10
        while len(said) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(said)
    time.sleep(0.2)
    assert count >= 2
    assert len(said) == count
    assert said[0].startswith("… stopping ktrdr--a (")
    assert said[0].endswith("s)")


def test_a_quick_step_says_nothing_extra() -> None:
    said: list[str] = []
    with heartbeat("stopping ktrdr--a", said.append):
        pass
    assert said == []

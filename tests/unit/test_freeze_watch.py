"""FreezeWatch: which silences count as a freeze and what is credited. The clock is a stand-in
(seconds cannot be made to pass for free); the real stop is in tests/integration/api/
test_freeze.py."""

from __future__ import annotations

import pytest

from ktrdr.api.freeze import FreezeWatch


class ClockStandIn:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_a_silence_over_the_threshold_is_credited_once() -> None:
    clock, credited = ClockStandIn(), []
    watch = FreezeWatch(credited.append, threshold_s=6.0, clock=clock)
    clock.now += 5.0
    assert watch.check() == 0.0
    clock.now += 30.0
    assert watch.check() == 30.0
    assert watch.check() == 0.0  # the same gap is never credited twice
    assert credited == [30.0]


def test_a_failed_credit_keeps_the_gap_for_the_next_check() -> None:
    clock, credited = ClockStandIn(), []
    failures = [ConnectionError("database not back yet")]

    def credit(gap: float) -> None:
        if failures:
            raise failures.pop()
        credited.append(gap)

    watch = FreezeWatch(credit, threshold_s=6.0, clock=clock)
    clock.now += 20.0
    with pytest.raises(ConnectionError):
        watch.check()
    clock.now += 1.0
    assert watch.check() == 21.0
    assert credited == [21.0]


def test_restart_forgets_the_start_up_time() -> None:
    clock, credited = ClockStandIn(), []
    watch = FreezeWatch(credited.append, threshold_s=6.0, clock=clock)
    clock.now += 60.0  # migrations, imports: not a freeze
    watch.restart()
    assert watch.check() == 0.0
    assert credited == []

"""Waiting in tests: poll a condition until it holds, or fail the test saying what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import pytest

T = TypeVar("T")

# What a service that is still starting answers: no connection yet, no JSON yet, no field yet.
STARTING: tuple[type[Exception], ...] = (httpx.HTTPError, ValueError, KeyError)


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    tolerate: tuple[type[BaseException], ...] = (),
    interval: float = 0.05,
) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return
    that. An exception of a `tolerate` type counts as "not yet". After `timeout` seconds the test
    fails with `what` (and the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value: T | None
        try:
            value = predicate()
        except tolerate:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s (last value: {value!r})")
        time.sleep(interval)

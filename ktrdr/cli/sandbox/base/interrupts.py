"""Holding Ctrl-C back past a point of no return.

Once `create` has registered its instance, rolling back on Ctrl-C would remove a worktree the
registry already lists, and stopping before the result is printed leaves a finished instance
the user was never told about. Inside `deferred_interrupt()` a SIGINT is only recorded; the
caller finishes and says that the interrupt came too late to stop anything.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass
class Deferred:
    interrupted: bool = False


@contextmanager
def deferred_interrupt() -> Iterator[Deferred]:
    """Record SIGINT instead of raising KeyboardInterrupt until the block ends. Signals can
    only be handled in the main thread: elsewhere the block runs unprotected."""
    state = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def record(signum: int, frame: FrameType | None) -> None:
        state.interrupted = True

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)

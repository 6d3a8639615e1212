"""A line every few seconds while a long step runs, so a pipe (agents, CI) never goes silent
long enough to look like a hang. Used by the commands, never by the core."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

EVERY_S = 4.0


@contextmanager
def heartbeat(
    what: str,
    say: Callable[[str], None],
    *,
    every: float = EVERY_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """`say(f"… {what} ({n}s)")` every `every` seconds until the block ends."""
    stop = threading.Event()
    started = clock()

    def beat() -> None:
        while not stop.wait(every):
            say(f"… {what} ({clock() - started:.0f}s)")

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

"""Time the backend did not run must not count against the workers' heartbeats.

`ktrdr sandbox pause` freezes every container of a stack (the cgroup freezer), a laptop sleeps,
a debugger stops the process: afterwards the wall clock has jumped, so every heartbeat looks
minutes old although the workers were frozen with the backend and never missed a beat. The
dispatcher would then fail their running operations before they could beat again.

The backend observes itself: its dispatcher touches the store every round, so a gap between
two observations longer than a round plus some slack means nothing of it ran. That gap is
credited to the heartbeats (they move forward by it, never past now), before any liveness is
read. A worker that was already dead stays dead: its heartbeat was older than the timeout
before the gap, and is still older after moving forward by it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class FreezeWatch:
    def __init__(
        self,
        credit: Callable[[float], None],
        *,
        threshold_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credit, self._threshold_s, self._clock = credit, threshold_s, clock
        self._last_seen = clock()
        self._lock = threading.Lock()

    def restart(self) -> None:
        """Start counting now (the dispatcher starts: the time before was start-up, not a
        freeze)."""
        with self._lock:
            self._last_seen = self._clock()

    def check(self) -> float:
        """Credit an unobserved gap (seconds) and return it; 0.0 when there was none. If the
        credit fails (the database is not back yet) the gap stays to be credited next time."""
        with self._lock:
            now = self._clock()
            gap = now - self._last_seen
            if gap > self._threshold_s:
                self._credit(gap)
            self._last_seen = now
            return gap if gap > self._threshold_s else 0.0

"""An instance's containers followed from one stream of the engine's events, for the gate.

Polling asks the engine twice a round (`docker ps`, then `docker inspect`). While the gate runs,
one `docker events` child per instance says when any of its containers changed instead: a
round with no event reuses the last states (no docker process at all), a round after events
inspects the known containers (one process), and only a container the listing has not seen yet
makes it list again. The stream replays from a few seconds before the first listing, so a
change made while it connects is never missed. If the stream ends (engine gone, SSH dropped),
every round asks the engine again, as polling does.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterable

from ktrdr.cli.sandbox.base import proc
from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.engine.queries import (
    ContainerState,
    container_ids,
    ensure_engine,
    inspect_containers,
    owned_filters,
)

REPLAY_S = 5  # covers the stream's connect time and a small clock skew of a remote engine


class ContainerFollower:
    """`containers()` as `queries.ps` answers it, asking the engine only after a change."""

    def __init__(self, engine: Engine, instance_id: str) -> None:
        self.engine, self.instance_id = engine, instance_id
        self._lock = threading.Lock()
        self._changed: set[str] = set()  # container ids an event named since the last look
        self._ids: list[str] = []
        self._states: list[ContainerState] | None = None
        self._stream: subprocess.Popen[str] | None = None
        self._streaming = False
        self.engine_asks = 0  # docker processes run for the states (the benchmark reads it)

    def containers(self) -> list[ContainerState]:
        if self._stream is None:
            self._follow()
        with self._lock:
            changed, self._changed = self._changed, set()
            streaming = self._streaming
        if self._states is not None and streaming and not changed:
            return list(self._states)
        if self._states is None or not streaming or changed - set(self._ids):
            ensure_engine(self.engine)
            self._ids = container_ids(self.engine, self.instance_id)
            self.engine_asks += 1
        self._states = inspect_containers(self.engine, self._ids) if self._ids else []
        self.engine_asks += 1 if self._ids else 0
        return list(self._states)

    def close(self) -> None:
        if self._stream is not None and self._stream.poll() is None:
            self._stream.terminate()
            try:
                self._stream.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._stream.kill()

    def _follow(self) -> None:
        # Every container event of the instance counts (start, die, health_status, …): one
        # too many costs an inspect, one missed would hide a crash.
        argv = self.engine.argv(
            "events",
            "--since",
            str(int(time.time()) - REPLAY_S),
            "--format",
            "{{.Actor.ID}} {{.Action}}",
            "--filter",
            "type=container",
            *owned_filters(self.instance_id),
        )
        try:
            self._stream = proc.spawn(argv)
        except SandboxError:
            return  # no stream: every round asks, as polling does
        self._streaming = True
        lines = self._stream.stdout
        if lines is not None:
            threading.Thread(
                target=self._read, args=(lines,), name="gate-events", daemon=True
            ).start()

    def _read(self, lines: Iterable[str]) -> None:
        for line in lines:
            container = line.split(" ", 1)[0].strip()
            if container:
                with self._lock:
                    self._changed.add(container)
        with self._lock:
            self._streaming = False

"""A backend that did not run (SIGSTOP here; the cgroup freezer of `ktrdr sandbox pause` in
tests/integration/test_pause.py) does not count that time against the workers' heartbeats,
and a worker that stays silent afterwards still becomes unreachable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.api_server import free_port
from tests.support.api_v1 import V1, register, workers_by_id
from tests.support.waiting import wait_for

HEARTBEAT_TIMEOUT_S = 2.0
DISPATCH_INTERVAL_S = 0.2  # a freeze is a silence over 0.2 + 5 s


@pytest.fixture
def backend(migrated_database: str) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """The backend as its container runs it (python -m ktrdr.api), in a process of its own so
    that it can be stopped."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": migrated_database,
        "KTRDR_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
        "KTRDR_DISPATCH_INTERVAL_S": str(DISPATCH_INTERVAL_S),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ktrdr.api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def answers() -> bool:
        try:
            return client.get(f"{V1}/health").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answers, timeout=30, what="the backend answering")
        yield process, client
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(timeout=10)
        client.close()


@pytest.mark.timing
def test_time_the_backend_was_stopped_does_not_make_workers_unreachable(
    backend: tuple[subprocess.Popen[bytes], httpx.Client],
) -> None:
    process, api = backend
    register(api, "backtest-worker-1", "http://backtest-worker-1:8080")
    assert workers_by_id(api)["backtest-worker-1"]["status"] == "idle"

    os.kill(process.pid, signal.SIGSTOP)
    time.sleep(7)  # > the 5.2 s freeze threshold and > the 2 s heartbeat timeout
    os.kill(process.pid, signal.SIGCONT)
    # The worker's last heartbeat is now 7 s old on the wall clock, but the backend did not
    # observe those seconds (in a paused stack, neither did the worker).
    assert workers_by_id(api)["backtest-worker-1"]["status"] == "idle"

    # Credit is not immortality: a worker that stays silent becomes unreachable.
    wait_for(
        lambda: workers_by_id(api)["backtest-worker-1"]["status"] == "unreachable",
        timeout=HEARTBEAT_TIMEOUT_S + 5,
        what="backtest-worker-1 unreachable",
    )

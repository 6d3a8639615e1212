"""The gate's container follower on the real engine: it sees what `docker ps` + `inspect` see,
notices a change only through the engine's event stream, and runs no docker process for a round
in which nothing changed. Every container carries this test's own owner label."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from ktrdr.cli.sandbox.engine import queries
from ktrdr.cli.sandbox.engine.follow import ContainerFollower
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home.directory import home_id

pytestmark = pytest.mark.docker

SMALL_IMAGE = "ktrdr-offline/debian:bookworm"
SETTLE_TIMEOUT = 60.0


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


@pytest.fixture
def instance(docker_engine: object) -> Iterator[str]:
    if not _docker("images", "-q", SMALL_IMAGE).strip():
        pytest.skip(f"{SMALL_IMAGE} not built (make images-offline)")
    name = f"ktrdr-test-follow-{uuid.uuid4().hex[:8]}"
    yield name
    for container in _docker("ps", "-aq", "--filter", f"label=ktrdr.instance={name}").split():
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def _run(instance: str, service: str) -> None:
    _docker(
        "run", "-d", "--name", f"{instance}-{service}-1",
        "--label", f"ktrdr.owner={home_id()}", "--label", f"ktrdr.instance={instance}",
        "--label", "ktrdr.test=1", "--label", f"com.docker.compose.service={service}",
        SMALL_IMAGE, "sleep", "300",
    )  # fmt: skip


def _until(follower: ContainerFollower, wanted: Callable[[list[queries.ContainerState]], bool]):
    """Ask the follower round after round (as the gate does) until it shows `wanted`."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        states = follower.containers()
        if wanted(states):
            return states
        time.sleep(0.1)
    pytest.fail(f"the follower never showed the change; last: {states}")


def test_the_follower_sees_changes_through_events_and_asks_nothing_while_none_come(
    instance: str,
) -> None:
    _run(instance, "db")
    follower = ContainerFollower(Engine(), instance)
    try:
        first = follower.containers()
        assert [(s.service, s.state) for s in first] == [("db", "running")]
        assert first == queries.ps(Engine(), instance)

        _run(instance, "backend")  # a container the listing has not seen: listed again
        _until(follower, lambda states: [s.service for s in states] == ["backend", "db"])
        _docker("stop", "-t", "0", f"{instance}-db-1")  # a known one changed: inspected
        stopped = _until(follower, lambda states: states[-1].state == "exited")
        assert stopped == queries.ps(Engine(), instance)

        # Events of the stop may still be on their way; once the answer stops changing,
        # rounds without an event run no docker process.
        _until(follower, lambda states: states == stopped)
        time.sleep(1.0)  # let the stream deliver the stop's last events
        follower.containers()
        asked = follower.engine_asks
        for _ in range(20):
            assert follower.containers() == stopped
        assert follower.engine_asks == asked
    finally:
        follower.close()

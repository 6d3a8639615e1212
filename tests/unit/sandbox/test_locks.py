"""The per-instance lock: one writer per instance, a waiter says whom it waits for, and a killed
holder never leaves the lock held. A real second process holds the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home.locks import instance_lock
from tests.support.waiting import wait_for

HOLDER = """
import sys, time
from pathlib import Path
from ktrdr.cli.sandbox.home.locks import instance_lock
with instance_lock("ktrdr--feat", command="ktrdr sandbox up"):
    Path(sys.argv[1]).write_text("held")
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding instance ktrdr--feat's lock (as `up`) until killed."""
    marker = tmp_path / "held"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(marker), "300"], env=os.environ)
    wait_for(marker.exists, timeout=20.0, what=f"{marker} to appear")
    yield process
    process.kill()
    process.wait()


def test_a_second_writer_refuses_naming_the_holder_when_it_may_not_wait(
    holder: subprocess.Popen[bytes],
) -> None:
    with (
        pytest.raises(SandboxError) as error,
        instance_lock("ktrdr--feat", command="ktrdr sandbox down", wait=0),
    ):
        pytest.fail("the lock was taken twice")
    message = str(error.value)
    assert f"process {holder.pid} (`ktrdr sandbox up`" in message
    assert message.startswith("instance ktrdr--feat is busy")


@pytest.mark.timing
def test_a_waiter_says_for_whom_it_waits_then_gets_the_lock_when_the_holder_dies(
    holder: subprocess.Popen[bytes],
) -> None:
    told: list[str] = []

    def notify(message: str) -> None:
        told.append(message)
        if len(told) == 1:
            holder.send_signal(signal.SIGKILL)  # the kernel drops a dead holder's lock

    with instance_lock("ktrdr--feat", command="ktrdr sandbox up", on_wait=notify, wait=60):
        pass
    assert told
    assert f"process {holder.pid}" in told[0]
    assert told[0].startswith("waiting for instance ktrdr--feat:")


def test_other_instances_are_not_blocked(holder: subprocess.Popen[bytes]) -> None:
    with instance_lock("ktrdr--other", command="ktrdr sandbox up", wait=0):
        pass

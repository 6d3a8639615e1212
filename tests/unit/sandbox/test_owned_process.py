"""Owned background processes with real processes: recorded, recognised after pid reuse would
lie, stopped with their children, and found as orphans by their marker."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.home import owned_process
from ktrdr.cli.sandbox.home.owned_process import OwnedProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

# A process that prints a line, starts a child of its own, and waits.
SLEEPER = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; print('sleeper-is-up', flush=True); "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)",
]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "run"
    yield root
    for orphan in owned_process.orphans(root):  # never leave a process behind
        owned_process.stop_orphan(orphan, grace=1)


def _launch(root: Path, argv: list[str] = SLEEPER, **kwargs: object) -> OwnedProcess:
    directory = root / "inst"
    log = owned_process.log_path(directory, "watch")
    options: dict[str, object] = {
        "kind": "watch",
        "instance_id": "inst",
        "directory": directory,
        "ready": lambda: "sleeper-is-up" in (log.read_text() if log.exists() else ""),
        "timeout": 10.0,
        "what": "the test sleeper",
        **kwargs,
    }
    return owned_process.launch(argv, **options)  # type: ignore[arg-type]  # test kwargs


def test_launch_records_pid_start_time_and_program_and_the_process_is_alive(state: Path) -> None:
    record = _launch(state)

    saved = json.loads((state / "inst" / "watch.json").read_text())
    assert saved["pid"] == record.pid
    assert saved["started"] == owned_process.start_time(record.pid)
    assert record.program == Path(sys.executable).name
    assert owned_process.alive(record)
    assert owned_process.load(state / "inst", "watch") == record
    owned_process.stop(record, grace=2)


def test_a_record_whose_start_time_differs_is_not_alive_so_a_reused_pid_is_never_signalled(
    state: Path,
) -> None:
    record = _launch(state)
    reused = OwnedProcess(**{**record.to_json(), "started": record.started + 1, "run_id": "x"})

    assert not owned_process.alive(reused)
    assert owned_process.stop(reused, grace=1) is False
    assert owned_process.alive(record)  # untouched
    owned_process.stop(record, grace=2)


def test_a_record_naming_another_program_is_not_alive(state: Path) -> None:
    record = _launch(state)
    other = OwnedProcess(**{**record.to_json(), "program": "ssh"})

    assert not owned_process.alive(other)
    owned_process.stop(record, grace=2)


def test_stop_ends_the_process_and_its_children_and_removes_the_record(state: Path) -> None:
    record = _launch(state)
    wait_for(
        lambda: len(owned_process._members(record)) == 2,
        timeout=5.0,
        what="the process and its child",
    )

    assert owned_process.stop(record, grace=5) is True

    assert not owned_process.alive(record)
    assert owned_process._members(record) == []
    assert not (state / "inst" / "watch.json").exists()
    assert owned_process.orphans(state) == []


def test_a_process_that_exits_before_it_is_ready_fails_with_its_log_tail(state: Path) -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys; print('bind: Address already in use'); sys.exit(255)",
    ]

    with pytest.raises(SandboxError, match=r"test sleeper exited \(code 255\).*Address already"):
        _launch(state, argv)

    assert not (state / "inst" / "watch.json").exists()


@pytest.mark.timing
def test_a_process_never_ready_is_stopped_after_the_timeout(state: Path) -> None:
    with pytest.raises(SandboxError, match=r"not ready in 0\.5s"):
        _launch(state, ready=lambda: False, timeout=0.5)

    assert not (state / "inst" / "watch.json").exists()
    assert owned_process.orphans(state) == []


def test_a_process_whose_record_is_gone_is_an_orphan_and_can_be_stopped(state: Path) -> None:
    record = _launch(state)
    wait_for(
        lambda: len(owned_process._members(record)) == 2,
        timeout=5.0,
        what="the process and its child",
    )
    (state / "inst" / "watch.json").unlink()

    found = owned_process.orphans(state)

    assert len(found) == 1
    assert record.pid in found[0].pids
    assert len(found[0].pids) == 2  # the child carries the marker too
    assert found[0].record_path == str(state / "inst" / "watch.json")
    owned_process.stop_orphan(found[0], grace=5)
    assert owned_process.orphans(state) == []
    assert not owned_process.alive(record)


def test_a_live_recorded_process_is_no_orphan_but_an_earlier_run_of_the_same_record_is(
    state: Path,
) -> None:
    first = _launch(state)
    (state / "inst" / "watch.json").unlink()  # as if a killed `up` lost it
    second = _launch(state)

    found = owned_process.orphans(state, "watch")

    assert [o.marker for o in found] == [first.marker]
    assert owned_process.orphans(state, "forward") == []
    owned_process.stop(second, grace=2)
    owned_process.stop_orphan(found[0], grace=2)


def test_orphans_look_only_under_the_given_state_root(state: Path, tmp_path: Path) -> None:
    record = _launch(state)
    (state / "inst" / "watch.json").unlink()

    assert owned_process.orphans(tmp_path / "another-home" / "run") == []
    assert len(owned_process.orphans(state)) == 1
    owned_process.stop_orphan(owned_process.orphans(state)[0], grace=2)
    assert not owned_process.alive(record)


def test_an_unreadable_record_loads_as_none(state: Path) -> None:
    (state / "inst").mkdir(parents=True)
    (state / "inst" / "watch.json").write_text("{not json")

    assert owned_process.load(state / "inst", "watch") is None


def test_the_child_gets_the_callers_environment_plus_the_marker(state: Path) -> None:
    argv = [
        sys.executable,
        "-c",
        "import os, time; print('sleeper-is-up', os.environ['KTRDR_OWNED_PROCESS'], "
        "os.environ['EXTRA'], flush=True); time.sleep(60)",
    ]
    record = _launch(state, argv, env={**os.environ, "EXTRA": "given"})

    log = Path(record.log_path).read_text()
    assert f"sleeper-is-up {record.marker} given" in log
    owned_process.stop(record, grace=2)


def test_stop_all_stops_every_kind_and_remove_state_drops_the_directory(state: Path) -> None:
    watch = _launch(state)
    log = owned_process.log_path(state / "inst", "forward")
    forward = owned_process.launch(
        SLEEPER,
        kind="forward",
        instance_id="inst",
        directory=state / "inst",
        ready=lambda: "sleeper-is-up" in (log.read_text() if log.exists() else ""),
        timeout=10.0,
        what="the second sleeper",
    )
    (state / "inst" / "ports.json").write_text('{"8003": 21000}\n')  # not a process record

    assert owned_process.stop_all(state / "inst", grace=5) == ["forward", "watch"]
    assert not owned_process.alive(watch)
    assert not owned_process.alive(forward)
    owned_process.remove_state(state / "inst")
    assert not (state / "inst").exists()
    assert owned_process.orphans(state) == []

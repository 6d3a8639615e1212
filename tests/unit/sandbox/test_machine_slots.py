"""Slots across homes: the machine-wide allocation lock, the claim marker a create leaves on the
engine (stand-in here; the real one in tests/integration/test_ownership.py), and leftovers of
deleted homes that must not block a slot forever."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.errors import SandboxError
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.instances.locate import locate
from ktrdr.cli.sandbox.provision.create import create_instance
from ktrdr.cli.sandbox.provision.init_checkout import init_instance
from ktrdr.cli.sandbox.slots import machine_slots
from tests.support.docker_standin import DockerStandIn


@pytest.fixture(autouse=True)
def _no_port_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ktrdr.cli.sandbox.provision.allocation.port_in_use", lambda port: False)


def test_create_leaves_a_claim_marker_with_its_slot(repo: Path, docker: DockerStandIn) -> None:
    result = create_instance(name="feat-a", cwd=repo)
    assert docker.slot_marks == {"ktrdr--feat-a": result.slot}


def test_init_marks_the_slot_it_took(repo: Path, docker: DockerStandIn) -> None:
    result = init_instance(cwd=repo, slot=3)
    assert docker.slot_marks == {result.instance_id: 3}


def test_a_failed_create_removes_its_marker(
    repo: Path, docker: DockerStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_add(*args: object, **kwargs: object) -> None:
        raise SandboxError("git worktree add failed (injected)")

    monkeypatch.setattr("ktrdr.cli.sandbox.instances.worktree.add", failing_add)
    with pytest.raises(SandboxError, match="injected"):
        create_instance(name="feat-a", cwd=repo)
    assert docker.slot_marks == {}
    assert registry.load() == {}


def test_reaping_a_killed_create_removes_its_marker(repo: Path, docker: DockerStandIn) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    with registry.transaction() as entries:
        entries["ktrdr--gone"] = registry.Entry(
            instance_id="ktrdr--gone",
            slot=1,
            path=str(repo.parent / "ktrdr--gone"),
            kind="worktree",
            branch="gone",
            created_at=registry.now_iso(),
            state="creating",
            pid=int(dead.stdout),
            name="gone",
            repo=str(repo),
        )
    docker.slot_marks["ktrdr--gone"] = 1
    result = create_instance(name="feat-a", cwd=repo)
    assert "ktrdr--gone" not in registry.load()
    assert docker.slot_marks == {"ktrdr--feat-a": result.slot}


@pytest.mark.timing
def test_the_allocation_lock_excludes_another_process(tmp_path: Path) -> None:
    """Held by a child process (another home's create), this process waits for it."""
    lock = os.environ["KTRDR_SLOTS_LOCK"]
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock\n"
            f"with FileLock({lock!r}):\n"
            "    print('held', flush=True); time.sleep(1.0)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    started = time.monotonic()
    with machine_slots.allocation_lock():
        waited = time.monotonic() - started
    child.wait(timeout=10)
    assert waited > 0.3, "the lock was taken while another process held it"


@pytest.mark.timing
def test_the_allocation_lock_times_out_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(machine_slots, "LOCK_TIMEOUT", 0.2)
    from filelock import FileLock

    holder_done = threading.Event()
    held = threading.Event()

    def hold() -> None:
        # thread_local=False: a second FileLock object in this process must see it as held.
        with FileLock(os.environ["KTRDR_SLOTS_LOCK"], thread_local=False, is_singleton=False):
            held.set()
            holder_done.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "from ktrdr.cli.sandbox.slots import machine_slots\n"
                "machine_slots.LOCK_TIMEOUT = 0.2\n"
                "from ktrdr.cli.sandbox.base.errors import SandboxError\n"
                "try:\n"
                "    with machine_slots.allocation_lock(): print('taken')\n"
                "except SandboxError as e: print(e)",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        holder_done.set()
        thread.join()
    assert "slot allocation lock" in child.stdout, child.stderr
    assert "retry" in child.stdout, child.stderr


def test_an_unwritable_lock_file_does_not_stop_allocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's lock file (or a read-only temp dir): allocate without the lock."""

    def refuse(self: object) -> None:
        raise PermissionError("stand-in: another user's lock file")

    monkeypatch.setattr("filelock.FileLock.acquire", refuse)
    with machine_slots.allocation_lock():
        pass


def test_slots_of_a_deleted_home_do_not_count(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    alive.mkdir()
    (alive / "home-id").write_text("aaaa1111\n")
    assert ownership._home_exists("aaaa1111", str(alive))
    assert not ownership._home_exists("bbbb2222", str(alive))  # a new home at the same path
    assert not ownership._home_exists("aaaa1111", str(tmp_path / "deleted"))
    assert ownership._home_exists("aaaa1111", "")  # unlabelled: assume alive


def test_up_refuses_a_slot_another_home_claims(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A create that ran while the engine was down has no marker; if another home took the
    slot meanwhile, `up` says so instead of colliding on ports. The engine calls before that
    check are stand-ins (no engine in unit tests)."""
    from ktrdr.cli.sandbox.lifecycle import preflight

    result = create_instance(name="feat-a", cwd=repo)
    instance = locate(None, result.path)
    holder = "instance ktrdr--x of KTRDR_HOME /elsewhere"
    monkeypatch.setattr(engine, "ensure_engine", lambda docker: None)
    monkeypatch.setattr(ownership, "foreign_in_project", lambda *args, **kwargs: [])
    monkeypatch.setattr(ownership, "duplicate_networks", lambda docker, instance_id: {})
    monkeypatch.setattr(engine, "ps", lambda docker, instance_id: [])
    monkeypatch.setattr(ownership, "slots_of_other_homes", lambda docker: {result.slot: holder})
    with pytest.raises(SandboxError, match="claimed by instance ktrdr--x"):
        preflight.prepare_start(instance, notify=lambda line: None)

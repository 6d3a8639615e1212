"""The whole loop on the real engine, and crash recovery.

- create → up → `make test-e2e` → evidence → destroy, with the offline images;
- `ktrdr sandbox create` killed with SIGKILL at random points (and one `up` killed, its worktree
  then deleted by hand), then `ktrdr sandbox doctor --fix`: the registry is valid and no
  worktree, container, volume or network is left that no instance owns;
- `ktrdr sandbox destroy` killed at random points (once inside `docker compose down`), then
  rerun: it finishes, and nothing of the instance is left.

Every instance is created by the real CLI in a git copy of this project in tmp_path, with
KTRDR_TEST=1 and a tmp KTRDR_HOME; a finalizer removes everything by label even on failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.cli import KTRDR
from tests.support.workspace import UP_TIMEOUT, Workspace

pytestmark = pytest.mark.docker

VENV_BIN = Path(sys.executable).parent
KILL_ITERATIONS = 8


def labelled(instance_id: str) -> list[str]:
    """Containers, volumes and networks still carrying the instance's label or project."""
    found: list[str] = []
    for kind, argv in (
        ("container", ["docker", "ps", "-aq"]),
        ("volume", ["docker", "volume", "ls", "-q"]),
        ("network", ["docker", "network", "ls", "-q"]),
    ):
        for label in ("ktrdr.instance", "com.docker.compose.project"):
            out = subprocess.run(
                [*argv, "--filter", f"label={label}={instance_id}"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
            found += [f"{kind} {line}" for line in out.split()]
    return sorted(set(found))


def test_create_up_test_e2e_evidence_destroy(workspace: Workspace) -> None:
    workspace.ktrdr("sandbox", "create", "life")
    instance = workspace.path_of("life")
    workspace.instance_ids.add(instance.name)

    started = time.monotonic()
    up = workspace.ktrdr("sandbox", "up", cwd=instance, timeout=UP_TIMEOUT)
    print(f"up to PASSED: {time.monotonic() - started:.1f}s", file=sys.stderr)
    assert "Startability Gate: PASSED" in up["stdout"] + up["stderr"]

    with workspace.connect_db(instance) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1

    # `make test-e2e` as a user runs it, reusing this venv instead of building one per worktree.
    venv = str(VENV_BIN.parent)
    started = time.monotonic()
    e2e = workspace.run("make", "-s", "test-e2e", f"VENV={venv}", cwd=instance, timeout=UP_TIMEOUT)
    print(f"make test-e2e: {time.monotonic() - started:.1f}s", file=sys.stderr)
    assert e2e.returncode == 0, f"{e2e.stdout}\n{e2e.stderr}"
    junit = instance / ".sandbox" / "test-results" / "e2e-junit.xml"
    assert 'failures="0"' in junit.read_text()
    assert 'errors="0"' in junit.read_text()
    assert "Jaeger stand-in" in e2e.stdout  # skipped with its reason printed (offline images)

    evidence = json.loads(workspace.ktrdr("sandbox", "evidence", "--json", cwd=instance)["stdout"])
    with tarfile.open(evidence["path"]) as tar:
        names = {member.name.split("/", 1)[1] for member in tar.getmembers()}
    assert {"gate-report.json", "compose-ps.txt", "git-head.txt", "git-diff-stat.txt"} <= names
    assert {"logs/backend.log", "logs/db.log", "test-results/e2e-junit.xml"} <= names
    assert evidence["missing"] == []

    workspace.ktrdr("sandbox", "destroy", "--yes", instance.name, timeout=300)
    assert labelled(instance.name) == []
    assert not instance.exists()
    assert workspace.registry() == {}


def linked_worktrees(repo: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths = [
        Path(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("worktree ")
    ]
    return [p for p in paths if p.resolve() != repo.resolve()]


def assert_reconciled(workspace: Workspace) -> None:
    entries = workspace.registry()
    for instance_id, entry in entries.items():
        assert entry["state"] == "ready", entry
        assert (Path(str(entry["path"])) / ".env.sandbox").is_file(), entry
        workspace.instance_ids.add(instance_id)
    registered = {Path(str(e["path"])).resolve() for e in entries.values()}
    for path in linked_worktrees(workspace.repo):
        assert path.resolve() in registered, f"orphaned worktree {path}"
    for path in workspace.repo.parent.glob(f"{workspace.repo.name}--*"):
        listing = sorted(str(p.relative_to(path)) for p in path.rglob("*"))[:20]
        assert path.resolve() in registered, f"orphaned directory {path}: {listing}"
    slots = [e["slot"] for e in entries.values()]
    assert len(slots) == len(set(slots)), entries
    for instance_id in workspace.instance_ids - set(entries):
        assert labelled(instance_id) == [], instance_id


def test_sigkill_during_create_and_up_then_doctor_fix_leaves_nothing_orphaned(
    workspace: Workspace,
) -> None:
    seed = int(os.environ.get("KTRDR_KILL_SEED", time.time()))
    rng = random.Random(seed)
    print(f"KTRDR_KILL_SEED={seed}", file=sys.stderr)

    started = time.monotonic()
    workspace.ktrdr("sandbox", "create", "timing")
    full = time.monotonic() - started  # kills land anywhere from start to just after the end
    workspace.ktrdr("sandbox", "destroy", "--yes", workspace.path_of("timing").name)
    for i in range(KILL_ITERATIONS):
        name = f"kill-{i}"
        workspace.instance_ids.add(workspace.path_of(name).name)
        process = workspace.popen("sandbox", "create", name)
        time.sleep(rng.uniform(0.0, full * 1.1))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # What a user does after a crash: doctor --fix. (A later create would otherwise
        # silently reclaim the dead claim's slot, leaving its half-made worktree behind.)
        report = workspace.run(KTRDR, "sandbox", "doctor", "--fix", "--json")
        assert report.stdout.startswith("{"), report.stderr
        assert json.loads(report.stdout)["fix"] is True, report.stderr
        assert_reconciled(workspace)
        if workspace.path_of(name).name in workspace.registry():  # the kill came too late
            workspace.ktrdr("sandbox", "destroy", "--yes", workspace.path_of(name).name)

    # Kill `up` once containers exist, then delete the worktree by hand: the containers, volume
    # and network now belong to no instance whose files exist.
    workspace.ktrdr("sandbox", "create", "whole")
    instance = workspace.path_of("whole")
    workspace.instance_ids.add(instance.name)
    process = workspace.popen("sandbox", "up", cwd=instance)
    deadline = time.monotonic() + UP_TIMEOUT
    while not any(item.startswith("container") for item in labelled(instance.name)):
        assert time.monotonic() < deadline, workspace.last_log()
        assert process.poll() is None, workspace.last_log()
        time.sleep(0.5)
    time.sleep(rng.uniform(0.0, 3.0))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    shutil.rmtree(instance)
    assert labelled(instance.name) != []

    report = workspace.run(KTRDR, "sandbox", "doctor", "--fix", "--json", timeout=300)
    assert report.stdout.startswith("{"), report.stderr
    payload = json.loads(report.stdout)
    assert any(p["subject"] == instance.name and p["fixed"] for p in payload["problems"]), payload
    assert_reconciled(workspace)
    assert labelled(instance.name) == []
    assert instance.name not in workspace.registry()

    again = workspace.run(KTRDR, "sandbox", "doctor", "--json")
    leftovers = [p for p in json.loads(again.stdout)["problems"] if p["severity"] == "error"]
    assert leftovers == [], leftovers
    assert again.returncode == 0


def assert_gone(workspace: Workspace, instance: Path) -> None:
    assert instance.name not in workspace.registry()
    assert not instance.exists(), sorted(str(p) for p in instance.rglob("*"))[:20]
    assert instance.resolve() not in [p.resolve() for p in linked_worktrees(workspace.repo)]
    assert labelled(instance.name) == []


def test_sigkill_during_destroy_then_destroy_again_finishes_the_job(workspace: Workspace) -> None:
    """Destroy was confirmed before it was killed, so rerunning it must finish — also when the
    kill left a half-deleted worktree (whose deleted files git reports as changes)."""
    seed = int(os.environ.get("KTRDR_KILL_SEED", time.time()))
    rng = random.Random(seed)
    print(f"KTRDR_KILL_SEED={seed}", file=sys.stderr)

    workspace.ktrdr("sandbox", "create", "timing")
    started = time.monotonic()
    workspace.ktrdr("sandbox", "destroy", "--yes", workspace.path_of("timing").name)
    full = time.monotonic() - started

    # Running containers first: the kill lands inside `docker compose down`.
    names = ["running", *(f"kill-{i}" for i in range(KILL_ITERATIONS))]
    for name in names:
        workspace.ktrdr("sandbox", "create", name)
        instance = workspace.path_of(name)
        workspace.instance_ids.add(instance.name)
        if name == "running":
            workspace.ktrdr("sandbox", "up", "--no-gate", cwd=instance, timeout=UP_TIMEOUT)
            assert labelled(instance.name) != []
        process = workspace.popen("sandbox", "destroy", "--yes", instance.name)
        time.sleep(rng.uniform(0.0, 3.0) if name == "running" else rng.uniform(0.0, full * 1.1))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

        if instance.name in workspace.registry():
            again = workspace.run(KTRDR, "sandbox", "destroy", "--yes", instance.name, timeout=300)
            assert again.returncode == 0, f"{workspace.last_log()}\n{again.stdout}\n{again.stderr}"
        assert_gone(workspace, instance)
        doctor = workspace.run(KTRDR, "sandbox", "doctor", "--json")
        problems = json.loads(doctor.stdout)["problems"]
        home = workspace.env["KTRDR_HOME"]
        # Another run's lost home on this shared engine is named too; this home's must be clean.
        ours = [p for p in problems if p["kind"] != "lost-home" or home in p["detail"]]
        assert [p for p in ours if p["severity"] != "info"] == [], problems

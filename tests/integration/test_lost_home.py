"""A lost home on the real engine: an instance is created and started in home A, home A is
deleted, and from home B `doctor` names the stack (path it had, what it holds), `init` in the old
checkout refuses, `adopt` takes it into B (volumes kept), and `doctor --remove-lost` removes what
is left of A. Everything is made by the real CLI in tmp_path under KTRDR_TEST=1 with two tmp
homes; the finalizer removes it by label even when the test fails, and nothing else is touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import KTRDR
from tests.support.project_copy import copy_project
from tests.support.workspace import UP_TIMEOUT, Workspace

pytestmark = pytest.mark.docker


def _labelled(owner: str) -> list[str]:
    found: list[str] = []
    for kind, argv in (
        ("container", ["docker", "ps", "-aq"]),
        ("volume", ["docker", "volume", "ls", "-q"]),
        ("network", ["docker", "network", "ls", "-q"]),
    ):
        out = subprocess.run(
            [*argv, "--filter", f"label=ktrdr.owner={owner}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        found += [f"{kind} {line}" for line in out.split()]
    return sorted(found)


def _remove_labelled(owner: str) -> None:
    for argv in (["docker", "ps", "-aq"], ["docker", "network", "ls", "-q"]):
        ids = subprocess.run(
            [*argv, "--filter", f"label=ktrdr.owner={owner}"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        if ids:
            rm = ["docker", "rm", "-f"] if argv[1] == "ps" else ["docker", "network", "rm"]
            subprocess.run([*rm, *ids], capture_output=True, timeout=120)
    ids = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=ktrdr.owner={owner}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "volume", "rm", "-f", *ids], capture_output=True, timeout=120)


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[tuple[Workspace, Workspace, list[str]]]:
    """Two homes on one copy of the project; the test adds each home id it learns to the
    list, and everything labelled with one of them is removed at the end."""
    repo = copy_project(tmp_path / "work" / "ktrdr")
    first = Workspace(repo, tmp_path / "home-a")
    second = Workspace(repo, tmp_path / "home-b")
    owners: list[str] = []
    try:
        first.ktrdr("sandbox", "init-shared")
        second.ktrdr("sandbox", "init-shared")
        yield first, second, owners
    finally:
        for home in ("home-a", "home-b"):
            path = tmp_path / home / "home-id"
            if path.exists():
                owners.append(path.read_text().strip())
        for owner in set(owners):
            _remove_labelled(owner)


def test_a_lost_homes_stack_is_named_by_doctor_then_adopted_or_removed(
    homes: tuple[Workspace, Workspace, list[str]],
) -> None:
    first, second, owners = homes
    home_a = Path(first.env["KTRDR_HOME"])
    first.ktrdr("sandbox", "create", "lost")
    old_owner = (home_a / "home-id").read_text().strip()
    owners.append(old_owner)
    instance = first.path_of("lost")
    first.ktrdr("sandbox", "up", "--no-gate", cwd=instance, timeout=UP_TIMEOUT)
    held = _labelled(old_owner)
    assert any(item.startswith("container ") for item in held)

    shutil.rmtree(home_a)  # the wrong `rm`

    report = json.loads(second.run(KTRDR, "sandbox", "doctor", "--json").stdout)
    # Only the home this test lost: another run may have lost one on this shared engine too.
    lost = [
        p for p in report["problems"] if p["kind"] == "lost-home" and str(home_a) in p["detail"]
    ]
    assert [p["subject"] for p in lost] == ["ktrdr--lost"]
    assert str(home_a) in lost[0]["detail"]
    assert str(instance) in lost[0]["detail"]
    assert f"--remove-lost {old_owner}" in lost[0]["detail"]
    assert _labelled(old_owner) == held  # doctor alone removed nothing

    refused = second.run(KTRDR, "sandbox", "init", cwd=instance)
    assert refused.returncode == 1
    assert f"`ktrdr sandbox adopt {instance}`" in refused.stderr
    assert _labelled(old_owner) == held

    adopted = json.loads(second.ktrdr("sandbox", "adopt", str(instance), "--json")["stdout"])
    assert adopted["instance_id"] == "ktrdr--lost"
    assert adopted["old_owner"] == old_owner
    left = _labelled(old_owner)
    assert left
    assert all(item.startswith("volume ") for item in left)
    listed = json.loads(second.ktrdr("sandbox", "list", "--json")["stdout"])
    assert [row["instance_id"] for row in listed] == ["ktrdr--lost"]

    second.ktrdr("sandbox", "doctor", "--remove-lost", old_owner)
    assert _labelled(old_owner) == []
    again = second.run(KTRDR, "sandbox", "doctor", "--remove-lost", old_owner)
    assert again.returncode == 1
    assert "no container, network or volume" in again.stderr

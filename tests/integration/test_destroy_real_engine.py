"""destroy and prune on the real Docker engine: this home's labelled volumes and networks really
go away, and another home's of the same instance id stay.

No image is needed: a volume and a network carrying the instance labels stand for the stack's
leftovers. Skipped without an engine unless CI is set (then required).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ktrdr.cli.main import cli
from ktrdr.cli.sandbox import compose, registry
from ktrdr.cli.sandbox.home import home_id
from ktrdr.cli.sandbox.instances import create_instance

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True)
def _engine() -> None:
    if not compose.engine_reachable():
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Docker engine is reachable")
        pytest.skip("no Docker engine reachable")


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


OTHER_HOME = "feedc0de"


@pytest.fixture
def labelled(repo: Path) -> Iterator[str]:
    """A unique instance id with a real volume and network owned by this test's home, and a
    volume of the same instance id owned by another home; all removed at the end."""
    instance_id = f"ktrdr--rt{os.getpid()}"
    labels = ["--label", f"ktrdr.instance={instance_id}", "--label", "ktrdr.test=1"]
    mine = ["--label", f"ktrdr.owner={home_id()}", *labels]
    _docker("volume", "create", *mine, f"{instance_id}_pgdata")
    _docker("network", "create", *mine, f"{instance_id}_default")
    other = ["--label", f"ktrdr.owner={OTHER_HOME}", *labels]
    _docker("volume", "create", *other, f"{instance_id}-{OTHER_HOME}_pgdata")
    yield instance_id
    for volume in (f"{instance_id}_pgdata", f"{instance_id}-{OTHER_HOME}_pgdata"):
        subprocess.run(["docker", "volume", "rm", "-f", volume], check=False, capture_output=True)
    subprocess.run(
        ["docker", "network", "rm", f"{instance_id}_default"], check=False, capture_output=True
    )


def _other_homes_volume_exists(instance_id: str) -> bool:
    return bool(_docker("volume", "ls", "-q", "--filter", f"name={instance_id}-{OTHER_HOME}_"))


def test_destroy_removes_labelled_volumes_and_networks_then_frees_the_slot(
    repo: Path, labelled: str
) -> None:
    name = labelled.removeprefix("ktrdr--")
    created = create_instance(name=name, cwd=repo)
    assert created.instance_id == labelled
    assert compose.leftovers(labelled) != []
    out = CliRunner().invoke(cli, ["sandbox", "destroy", name, "--yes"])
    assert out.exit_code == 0, out.output
    assert compose.leftovers(labelled) == []
    assert registry.load() == {}
    assert _other_homes_volume_exists(labelled)


def test_prune_removes_leftovers_of_a_deleted_worktree(repo: Path, labelled: str) -> None:
    created = create_instance(name=labelled.removeprefix("ktrdr--"), cwd=repo)
    shutil.rmtree(created.path)
    out = CliRunner().invoke(cli, ["sandbox", "prune"])
    assert out.exit_code == 0, out.output
    assert compose.leftovers(labelled) == []
    assert registry.load() == {}
    assert _other_homes_volume_exists(labelled)

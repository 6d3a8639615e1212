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
from ktrdr.cli.sandbox.engine import ownership
from ktrdr.cli.sandbox.engine import queries as engine
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.home import registry
from ktrdr.cli.sandbox.home.directory import home_id
from ktrdr.cli.sandbox.provision.create import create_instance

pytestmark = pytest.mark.docker


@pytest.fixture(autouse=True)
def _engine() -> None:
    if not engine.engine_reachable(Engine()):
        if os.environ.get("CI"):
            pytest.fail("CI is set but no Docker engine is reachable")
        pytest.skip("no Docker engine reachable")


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


OTHER_HOME = "feedc0de"


class Leftovers:
    """A unique instance id; `make()` gives it a real volume and network owned by this test's
    home and a volume of the same instance id owned by another home. Made after `create` (which
    refuses to start over this home's stale volumes); all removed at the end."""

    def __init__(self) -> None:
        self.instance_id = f"ktrdr--rt{os.getpid()}"
        self.name = self.instance_id.removeprefix("ktrdr--")

    def _labels(self, owner: str) -> list[str]:
        labels = [f"ktrdr.owner={owner}", f"ktrdr.instance={self.instance_id}", "ktrdr.test=1"]
        return [arg for label in labels for arg in ("--label", label)]

    def make(self) -> None:
        mine = self._labels(home_id())
        _docker("volume", "create", *mine, f"{self.instance_id}_pgdata")
        _docker("network", "create", *mine, f"{self.instance_id}_default")
        other = self._labels(OTHER_HOME)
        _docker("volume", "create", *other, f"{self.instance_id}-{OTHER_HOME}_pgdata")

    def remove(self) -> None:
        for volume in (f"{self.instance_id}_pgdata", f"{self.instance_id}-{OTHER_HOME}_pgdata"):
            subprocess.run(
                ["docker", "volume", "rm", "-f", volume], check=False, capture_output=True
            )
        subprocess.run(
            ["docker", "network", "rm", f"{self.instance_id}_default"],
            check=False,
            capture_output=True,
        )


@pytest.fixture
def leftovers(repo: Path) -> Iterator[Leftovers]:
    made = Leftovers()
    yield made
    made.remove()


def _other_homes_volume_exists(instance_id: str) -> bool:
    return bool(_docker("volume", "ls", "-q", "--filter", f"name={instance_id}-{OTHER_HOME}_"))


def test_destroy_removes_labelled_volumes_and_networks_then_frees_the_slot(
    repo: Path, leftovers: Leftovers
) -> None:
    created = create_instance(name=leftovers.name, cwd=repo)
    assert created.instance_id == leftovers.instance_id
    leftovers.make()
    assert ownership.leftovers(Engine(), leftovers.instance_id) != []
    out = CliRunner().invoke(cli, ["sandbox", "destroy", leftovers.name, "--yes"])
    assert out.exit_code == 0, out.output
    assert ownership.leftovers(Engine(), leftovers.instance_id) == []
    assert registry.load() == {}
    assert _other_homes_volume_exists(leftovers.instance_id)


def test_prune_removes_leftovers_of_a_deleted_worktree(repo: Path, leftovers: Leftovers) -> None:
    created = create_instance(name=leftovers.name, cwd=repo)
    leftovers.make()
    shutil.rmtree(created.path)
    out = CliRunner().invoke(cli, ["sandbox", "prune"])
    assert out.exit_code == 0, out.output
    assert ownership.leftovers(Engine(), leftovers.instance_id) == []
    assert registry.load() == {}
    assert _other_homes_volume_exists(leftovers.instance_id)

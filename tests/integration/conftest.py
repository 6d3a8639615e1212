"""Integration tests: a real Docker engine (every test file directly here carries the `docker`
marker; the harness lives in tests/support/engine.py) and a real PostgreSQL
(tests/integration/api). tests/unit needs neither."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.stack import compose
from tests.support.cli import KTRDR, cli_env
from tests.support.engine import remove_labelled
from tests.support.git_repos import make_repo
from tests.support.owners import owner_of
from tests.support.project_copy import copy_project
from tests.support.workspace import Workspace

HERE = Path(__file__).parent


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repo `<tmp>/work/ktrdr` with one commit; the test runs inside it."""
    path = make_repo(tmp_path / "work" / "ktrdr")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def workspace(tmp_path: Path, isolated_ktrdr_home: Path) -> Iterator[Workspace]:
    """A Workspace (tests/support/workspace.py) on this test's home, `init-shared` done; at the
    end every instance it made is taken down with its volumes, also when the test failed."""
    space = Workspace(copy_project(tmp_path / "work" / "ktrdr"), isolated_ktrdr_home)
    space.ktrdr("sandbox", "init-shared")
    yield space
    ids = set(space.instance_ids) | set(space.registry())
    for path in space.repo.parent.glob(f"{space.repo.name}--*"):
        ids.add(path.name)
    for instance_id in ids:
        try:
            compose.down(Engine(), instance_id, None, volumes=True)
        except Exception as e:  # the sweep goes on for the other instances
            print(f"cleanup of {instance_id} failed: {e}", file=sys.stderr)


@pytest.fixture
def agent_env(tmp_path: Path, isolated_ktrdr_home: Path) -> Iterator[dict[str, str]]:
    """What an agent's `ktrdr` runs with: this test's home, the test slots, the offline images,
    and a copy of the project (`TEST_REPO`) with `init-shared` done. At the end a background
    start a failure left running is stopped and everything the home owns is removed."""
    env = cli_env(isolated_ktrdr_home)
    env.pop("CLAUDE_PROJECT_DIR", None)  # the hooks must find the project from their payload
    repo = copy_project(tmp_path / "work" / "ktrdr")
    subprocess.run([KTRDR, "sandbox", "init-shared"], cwd=repo, env=env, check=True, timeout=120)
    env["TEST_REPO"] = str(repo)
    yield env
    for directory in (isolated_ktrdr_home / "run").glob("*"):
        for record in directory.glob("start.json"):
            pid = json.loads(record.read_text())["pid"]
            subprocess.run(["kill", "-TERM", f"-{pid}"], check=False, capture_output=True)
    remove_labelled(f"ktrdr.owner={owner_of(isolated_ktrdr_home)}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tests/integration/api needs PostgreSQL, not Docker: its fixtures use local PostgreSQL
    # binaries where they exist and fall back to the offline image (marker docker) otherwise.
    for item in items:
        if Path(item.path).parent == HERE and item.get_closest_marker("docker") is None:
            item.add_marker(pytest.mark.docker)

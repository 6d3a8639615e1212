"""Integration tests: a real Docker engine (every test file directly here carries the `docker`
marker; the harness lives in tests/support/engine.py) and a real PostgreSQL
(tests/integration/api). tests/unit needs neither."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.stack import compose
from tests.support.git_repos import make_repo
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tests/integration/api needs PostgreSQL, not Docker: its fixtures use local PostgreSQL
    # binaries where they exist and fall back to the offline image (marker docker) otherwise.
    for item in items:
        if Path(item.path).parent == HERE and item.get_closest_marker("docker") is None:
            item.add_marker(pytest.mark.docker)

"""Integration tests: a real Docker engine (every test file directly here carries the `docker`
marker; the harness lives in tests/support/engine.py) and a real PostgreSQL
(tests/integration/api). tests/unit needs neither."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.git_repos import make_repo

HERE = Path(__file__).parent


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repo `<tmp>/work/ktrdr` with one commit; the test runs inside it."""
    path = make_repo(tmp_path / "work" / "ktrdr")
    monkeypatch.chdir(path)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tests/integration/api needs PostgreSQL, not Docker: its fixtures use local PostgreSQL
    # binaries where they exist and fall back to the offline image (marker docker) otherwise.
    for item in items:
        if Path(item.path).parent == HERE and item.get_closest_marker("docker") is None:
            item.add_marker(pytest.mark.docker)

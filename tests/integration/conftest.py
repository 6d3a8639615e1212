"""Integration tests run against a real Docker engine: every test here carries the `docker` marker
(the harness itself lives in tests/docker_fixtures.py, shared with unit tests that need Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents and item.get_closest_marker("docker") is None:
            item.add_marker(pytest.mark.docker)

"""Fixtures for instance tests: real git repos in tmp_path and a named Docker stand-in
(tests/support/docker_standin.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.stack import docker_access
from tests.support.docker_standin import DockerStandIn
from tests.support.git_repos import git, make_repo
from tests.support.hooks import make_stack_repo
from tests.support.mcp_session import PROJECT


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repo `<tmp>/work/ktrdr` with one commit; the test runs inside it."""
    path = make_repo(tmp_path / "work" / "ktrdr")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> DockerStandIn:
    stand_in = DockerStandIn()
    monkeypatch.setattr(docker_access, "docker", lambda: stand_in)
    return stand_in


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A real git repo with the project's compose file (services, resources come from it)."""
    path = make_repo(tmp_path / "work" / "ktrdr")
    shutil.copy(PROJECT / "docker-compose.sandbox.yml", path / "docker-compose.sandbox.yml")
    git(path, "add", "docker-compose.sandbox.yml")
    git(path, "commit", "-q", "-m", "stack")
    return path


@pytest.fixture
def stack_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with a sandbox stack (its compose file) and two commits; the test runs in it."""
    path = make_stack_repo(tmp_path / "work" / "ktrdr")
    monkeypatch.chdir(path)
    return path

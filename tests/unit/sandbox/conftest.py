"""Fixtures for instance tests: real git repos in tmp_path and a named Docker stand-in."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ktrdr.cli.sandbox import instances, listing
from ktrdr.cli.sandbox.errors import DockerUnavailableError


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("scratch\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "init")
    return path


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real git repo `<tmp>/work/ktrdr` with one commit; the test runs inside it."""
    path = make_repo(tmp_path / "work" / "ktrdr")
    monkeypatch.chdir(path)
    return path


@dataclass
class Container:
    service: str
    state: str
    health: str | None = None
    name: str = ""
    instance_id: str = ""


@dataclass
class DockerStandIn:
    """Stands in for ktrdr.cli.sandbox.compose (the Docker engine) in unit tests, so they do
    not depend on whether an engine runs on this machine. Real-engine tests are marked docker."""

    reachable: bool = True
    containers: dict[str, list[Container]] = field(default_factory=dict)
    leftover: dict[str, list[str]] = field(default_factory=dict)
    downs: list[tuple[str, Path | None, bool]] = field(default_factory=list)
    queries: int = 0

    def engine_reachable(self) -> bool:
        return self.reachable

    def containers_by_instance(self) -> dict[str, list[Any]]:
        if not self.reachable:
            raise DockerUnavailableError("Docker engine not reachable (stand-in)")
        self.queries += 1
        return dict(self.containers)

    def down(self, instance_id: str, root: Path | None, *, volumes: bool) -> None:
        self.downs.append((instance_id, root, volumes))
        self.containers.pop(instance_id, None)

    def leftovers(self, instance_id: str) -> list[str]:
        return self.leftover.get(instance_id, [])

    def ps(self, instance_id: str, root: Path | None = None) -> list[Container]:
        if not self.reachable:
            raise DockerUnavailableError("Docker engine not reachable (stand-in)")
        return list(self.containers.get(instance_id, []))


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> DockerStandIn:
    stand_in = DockerStandIn()
    monkeypatch.setattr(instances, "_compose", lambda: stand_in)
    monkeypatch.setattr(listing, "compose_module", lambda: stand_in)
    return stand_in

"""Unit tests need no Docker engine and no database: every docker CLI call made here goes to an
engine socket that does not exist, so a test that reaches for the machine's real engine (and the
user's sandboxes on it) fails instead of touching them. Real-engine tests live in
tests/integration."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_docker_engine(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path_factory.getbasetemp() / "no-engine" / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{nowhere}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    # The machine-wide slot allocation lock stays inside this test session.
    monkeypatch.setenv("KTRDR_SLOTS_LOCK", str(tmp_path_factory.getbasetemp() / "slots.lock"))

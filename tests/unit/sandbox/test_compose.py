"""The compose wrapper: the argv built once (project, env files, compose file) and the
environment compose runs in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktrdr.cli.sandbox import compose
from ktrdr.cli.sandbox.stack_file import COMPOSE_FILE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / COMPOSE_FILE).write_text("services:\n  db: {image: postgres}\n")
    (tmp_path / ".env.sandbox").write_text("KTRDR_INSTANCE_ID=x\nKTRDR_API_PORT=8003\n")
    return tmp_path


def test_compose_argv_names_project_env_file_and_compose_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KTRDR_IMAGES", raising=False)
    env = {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "ktrdr--a-0123abcd"}
    argv = compose.compose_argv(root, env)
    assert argv == [
        "docker",
        "compose",
        "-p",
        "ktrdr--a-0123abcd",
        "--env-file",
        str(root / ".env.sandbox"),
        "-f",
        str(root / "docker-compose.sandbox.yml"),
        "--project-directory",
        str(root),
    ]


def test_offline_images_add_the_offline_env_file_after_the_instance_env_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KTRDR_IMAGES", raising=False)
    argv = compose.compose_argv(root, {"KTRDR_IMAGES": "offline", "COMPOSE_PROJECT_NAME": "a-1"})
    env_files = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--env-file"]
    assert env_files == [str(root / ".env.sandbox"), str(root / "docker/images-offline.env")]


def test_the_instance_env_file_decides_the_images_whatever_the_shell_exports(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRDR_IMAGES", "offline")
    upstream = {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "a-1"}
    assert "images-offline" not in " ".join(compose.compose_argv(root, upstream))
    assert "KTRDR_IMAGES" not in compose.compose_env(upstream)
    monkeypatch.setenv("KTRDR_IMAGES", "upstream")
    offline = {"KTRDR_IMAGES": "offline", "COMPOSE_PROJECT_NAME": "a-1"}
    assert "docker/images-offline.env" in " ".join(compose.compose_argv(root, offline))
    assert "KTRDR_IMAGES" not in compose.compose_env(offline)


def test_a_shell_images_mode_that_differs_from_the_instance_is_named_with_the_way_to_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_IMAGES", "offline")
    warning = compose.images_mismatch({"KTRDR_IMAGES": "upstream"})
    assert warning is not None
    assert "uses upstream" in warning
    assert "set KTRDR_IMAGES=offline in its .env.sandbox" in warning
    assert compose.images_mismatch({"KTRDR_IMAGES": "offline"}) is None
    monkeypatch.delenv("KTRDR_IMAGES")
    assert compose.images_mismatch({"KTRDR_IMAGES": "upstream"}) is None


def test_exported_instance_variables_cannot_override_the_env_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_API_PORT", "8009")
    monkeypatch.setenv("KTRDR_TEST", "1")
    env = compose.compose_env({"KTRDR_API_PORT": "8003", "KTRDR_INSTANCE_ID": "a"})
    assert "KTRDR_API_PORT" not in env
    assert env["KTRDR_TEST"] == "1"
    assert env["PATH"] == os.environ["PATH"]

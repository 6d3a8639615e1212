"""The compose wrapper: the argv built once (project, env files, compose file) and the
environment compose runs in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktrdr.cli.sandbox.base.stack_file import COMPOSE_FILE
from ktrdr.cli.sandbox.engine.handle import Engine
from ktrdr.cli.sandbox.stack import compose


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / COMPOSE_FILE).write_text("services:\n  db: {image: postgres}\n")
    (tmp_path / ".env.sandbox").write_text("KTRDR_INSTANCE_ID=x\nKTRDR_API_PORT=8003\n")
    return tmp_path


def test_compose_argv_names_the_project_and_compose_file_and_reads_no_env_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KTRDR_IMAGES", raising=False)
    env = {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "ktrdr--a-0123abcd"}
    argv = compose.compose_argv(Engine(), root, env)
    assert argv == [
        "docker",
        "compose",
        "-p",
        "ktrdr--a-0123abcd",
        "--env-file",
        os.devnull,
        "-f",
        str(root / "docker-compose.sandbox.yml"),
        "--project-directory",
        str(root),
    ]


def test_offline_images_come_from_the_offline_env_file_and_nothing_else_of_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KTRDR_IMAGES", raising=False)
    (root / "docker").mkdir()
    (root / "docker/images-offline.env").write_text(
        "KTRDR_APP_IMAGE=app:offline\nCOMPOSE_PROJECT_NAME=someone-else\nDOCKER_HOST=tcp://x:1\n"
    )
    env = compose.compose_env(
        Engine(), {"KTRDR_IMAGES": "offline", "COMPOSE_PROJECT_NAME": "a-1"}, root
    )
    assert env["KTRDR_APP_IMAGE"] == "app:offline"
    assert env["COMPOSE_PROJECT_NAME"] == "a-1"
    assert env.get("DOCKER_HOST") == os.environ.get("DOCKER_HOST")
    upstream = compose.compose_env(
        Engine(), {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "a"}, root
    )
    assert upstream.get("KTRDR_APP_IMAGE") == os.environ.get("KTRDR_APP_IMAGE")


def test_the_instance_decides_the_images_whatever_the_shell_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_IMAGES", "offline")
    upstream = {"KTRDR_IMAGES": "upstream", "COMPOSE_PROJECT_NAME": "a-1"}
    assert compose.compose_env(Engine(), upstream)["KTRDR_IMAGES"] == "upstream"
    assert compose.images_mode(upstream) == "upstream"


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


def test_exported_instance_variables_cannot_override_the_instance_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KTRDR_API_PORT", "8009")
    monkeypatch.setenv("KTRDR_TEST", "1")
    env = compose.compose_env(Engine(), {"KTRDR_API_PORT": "8003", "KTRDR_INSTANCE_ID": "a"})
    assert env["KTRDR_API_PORT"] == "8003"
    assert env["KTRDR_TEST"] == "1"
    assert env["PATH"] == os.environ["PATH"]

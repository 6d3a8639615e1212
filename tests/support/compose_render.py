"""docker-compose.sandbox.yml as `docker compose config` renders it (no engine needed) with the
env file the sandbox writes for an instance on a slot: `rendered(slot)`, cached per slot."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from ktrdr.cli.sandbox.base.proc import run
from ktrdr.cli.sandbox.home.instance import EnvSettings, render_env

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.sandbox.yml"
OFFLINE_ENV = REPO / "docker" / "images-offline.env"
SHARED_ROOT = Path("/srv/ktrdr-shared")
OWNER = "c0ffee42"


def instance_id(slot: int) -> str:
    return "ktrdr" if slot == 0 else f"ktrdr--feat-{slot}"


def write_env(directory: Path, slot: int, *, images: str = "offline") -> Path:
    """The `.env.sandbox` of an instance on `slot`, written by the sandbox's own renderer."""
    settings = EnvSettings(
        instance_id=instance_id(slot),
        slot=slot,
        shared_dir=SHARED_ROOT,
        images=images,
        db_password=f"db-secret-{slot}",
        grafana_password=f"grafana-secret-{slot}",
        checkout=Path(f"/work/ktrdr--feat-{slot}"),
        owner=OWNER,
        owner_home=Path("/home/dev/.ktrdr"),
    )
    path = directory / f"slot{slot}.env"
    path.write_text(render_env(settings, command="test"), encoding="utf-8")
    return path


def clean_env() -> dict[str, str]:
    """The environment minus anything compose would let override the env files."""
    prefixes = ("KTRDR_", "COMPOSE_", "GRAFANA_", "DOCKER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def compose_config(*env_files: Path, check: bool = True) -> Any:
    argv: list[object] = ["docker", "compose", "-p", "contract"]
    for env_file in env_files:
        argv += ["--env-file", env_file]
    argv += ["-f", COMPOSE_FILE, "--profile", "e2e", "config", "--format", "json"]
    return run(argv, cwd=REPO, env=clean_env(), timeout=60, check=check)


@cache
def rendered(slot: int, images: str = "offline") -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env_file = write_env(Path(tmp), slot, images=images)
        files = [env_file, OFFLINE_ENV] if images == "offline" else [env_file]
        result = compose_config(*files)
    assert "is not set" not in result.stderr, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]

"""Helpers for benchmarks that run real stacks: instances created from a clone of this project."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from bench.common import KTRDR, bench_env, clone_project

IMAGES_ENV = "docker/images-offline.env"


def stack_env(home: Path) -> dict[str, str]:
    env = bench_env(home)
    env.setdefault("KTRDR_IMAGES", os.environ.get("KTRDR_IMAGES", "offline"))
    return env


def make_instances(tmp_path: Path, count: int) -> tuple[dict[str, str], list[Path]]:
    env = stack_env(tmp_path / "home")
    repo = clone_project(tmp_path / "ktrdr")
    subprocess.run(
        [KTRDR, "sandbox", "init-shared"], env=env, cwd=repo, check=True, capture_output=True
    )
    paths: list[Path] = []
    try:
        for index in range(count):
            subprocess.run(
                [KTRDR, "sandbox", "create", f"p{index}"],
                env=env,
                cwd=repo,
                check=True,
                capture_output=True,
            )
            paths.append(tmp_path / f"ktrdr--p{index}")
    except BaseException:
        # A create that found no free slot (other stacks on the engine): the ones made so far
        # hold slot markers on the shared engine, which outlive this temporary home.
        destroy_all(env, paths)
        raise
    return env, paths


def plain_compose_argv(instance: Path, env: dict[str, str]) -> list[str]:
    values = dict(
        line.split("=", 1)
        for line in (instance / ".env.sandbox").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    argv = [
        "docker",
        "compose",
        "-p",
        values["COMPOSE_PROJECT_NAME"],
        "--env-file",
        str(instance / ".env.sandbox"),
    ]
    if env.get("KTRDR_IMAGES") == "offline":
        argv += ["--env-file", str(instance / IMAGES_ENV)]
    return [*argv, "-f", str(instance / "docker-compose.sandbox.yml")]


def destroy_all(env: dict[str, str], paths: list[Path]) -> None:
    for path in paths:
        subprocess.run(
            [KTRDR, "sandbox", "destroy", "--yes", "--force"],
            env=env,
            cwd=path,
            capture_output=True,
            check=False,
        )


def all_checks_true(api_port: int, other_ports: dict[str, int], workers: int) -> bool:
    """An independent observer of the gate's conditions (HTTP side), for detection lag."""
    try:
        health = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/health", timeout=0.5).json()
        listed = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/workers", timeout=0.5).json()
        ok = health.get("status") == "ok" and health.get("database") == "ok"
        ok = ok and sum(1 for w in listed if w.get("status") != "unreachable") >= workers
        for path_port in (
            f"{other_ports['prometheus']}/-/ready",
            f"{other_ports['grafana']}/api/health",
            f"{other_ports['jaeger']}/",
        ):
            ok = ok and httpx.get(f"http://127.0.0.1:{path_port}", timeout=0.5).status_code == 200
        return bool(ok)
    except (httpx.HTTPError, ValueError):
        return False

"""Helpers for benchmarks that run real stacks: instances created from a clone of this project."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx

from bench.common import KTRDR, bench_env, clone_project

IMAGES_ENV = "docker/images-offline.env"


def stack_env(home: Path) -> dict[str, str]:
    env = bench_env(home)
    env.setdefault("KTRDR_IMAGES", os.environ.get("KTRDR_IMAGES", "offline"))
    return env


def make_instances(
    tmp_path: Path, count: int, *, slots: str | None = None
) -> tuple[dict[str, str], list[Path]]:
    """`count` instances of one home in `tmp_path`; `slots` (FIRST-LAST) widens the machine's
    range for this home, as KTRDR_SLOTS does (the default 1..10 holds ten)."""
    env = stack_env(tmp_path / "home")
    if slots is not None:
        env["KTRDR_SLOTS"] = slots
    repo = clone_project(tmp_path / "ktrdr")
    paths: list[Path] = []
    try:
        subprocess.run(
            [KTRDR, "sandbox", "init-shared"], env=env, cwd=repo, check=True, capture_output=True
        )
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
        # A create that found no free slot (other stacks on the engine), or ctrl-c: the ones
        # made so far hold slot markers and the shared data volume on the shared engine, which
        # outlive this temporary home.
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
    """Destroy the instances, then remove whatever still carries this home's owner label (a
    create cut short, the shared data volume). Ctrl-C is held off until done: the cleanup runs
    in sessions of its own, so the terminal's SIGINT does not cut it short either."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        for path in paths:
            subprocess.run(
                [KTRDR, "sandbox", "destroy", "--yes", "--force"],
                env=env,
                cwd=path,
                capture_output=True,
                check=False,
                start_new_session=True,
            )
        left = sweep_owner(env)
        if left:
            print(f"bench: removed by owner label after destroy: {left}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def sweep_owner(env: dict[str, str]) -> list[str]:
    """Remove every container, volume and network labelled with this bench home's owner id;
    returns what was left. Only this home's label: nothing else on the engine is touched."""
    id_file = Path(env["KTRDR_HOME"]) / "home-id"
    if not id_file.is_file():
        return []
    owner = id_file.read_text().strip()
    left: list[str] = []
    for kind, listing, remove in (
        ("container", ["ps", "-aq"], ["rm", "-f", "-v"]),
        ("network", ["network", "ls", "-q"], ["network", "rm"]),
        ("volume", ["volume", "ls", "-q"], ["volume", "rm", "-f"]),
    ):
        ids = subprocess.run(
            ["docker", *listing, "--filter", f"label=ktrdr.owner={owner}"],
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        ).stdout.split()
        if ids:
            left += [f"{kind} {i[:12]}" for i in ids]
            subprocess.run(
                ["docker", *remove, *ids],
                capture_output=True,
                check=False,
                start_new_session=True,
            )
    return left


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

"""The whole stack on the real engine with the offline images, from a copy of this project in
tmp_path (so editing source for the hot-reload check never touches the real tree).

One stack serves every test here (it takes ~15-60 s to start); the hot-reload test runs last.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ktrdr.cli.sandbox.base.proc import run
from ktrdr.cli.sandbox.home.instance import EnvSettings, render_env
from ktrdr.cli.sandbox.slots.ports import SlotPorts, ports_for_slot
from tests.support.slots import TEST_SLOTS
from tests.support.waiting import STARTING, wait_for

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
COPIED = (
    "ktrdr",
    "tests",
    "deploy",
    "docker",
    "docker-compose.sandbox.yml",
    "Dockerfile",
    "pyproject.toml",
    "README.md",
)
OFFLINE_IMAGES = (
    "ktrdr-app:dev",
    "ktrdr-offline/postgres:15",
    "ktrdr-offline/prometheus:2",
    "ktrdr-offline/grafana-standin:1",
    "ktrdr-offline/jaeger-standin:1",
)
UP_TIMEOUT = 420


@dataclass
class Stack:
    root: Path
    project: str
    ports: SlotPorts
    shared: Path
    db_password: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}/api/v1"


def _require(condition: bool, message: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _engine_ready() -> None:
    ok = shutil.which("docker") is not None
    ok = ok and run(["docker", "info"], timeout=30, check=False).returncode == 0
    _require(ok, "no Docker engine: run `make docker`")
    missing = [
        image
        for image in OFFLINE_IMAGES
        if run(["docker", "image", "inspect", image], timeout=30, check=False).returncode
    ]
    _require(not missing, f"offline images missing ({', '.join(missing)}): `make images-offline`")


def _free_slot() -> int:
    def free(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    for slot in reversed(TEST_SLOTS):
        p = ports_for_slot(slot)
        if all(free(port) for port in p.all_ports().values()):
            return slot
    pytest.fail("no test slot has all its ports free")


def _copy_project(root: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)


def _compose(stack: Stack, *args: str, timeout: float = 120, check: bool = True) -> Any:
    argv = [
        "docker",
        "compose",
        "-p",
        stack.project,
        "--env-file",
        ".env.sandbox",
        "--env-file",
        "docker/images-offline.env",
        "-f",
        "docker-compose.sandbox.yml",
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KTRDR_", "COMPOSE_"))}
    env["KTRDR_TEST"] = "1"
    return run(argv, cwd=stack.root, env=env, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _engine_ready()
    base = tmp_path_factory.mktemp("stack")
    root, shared = base / "ktrdr--stack-test", base / "shared"
    _copy_project(root)
    sample = REPO / "ktrdr" / "sample_data"
    shutil.copytree(sample / "data", shared / "data", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(
        sample / "strategies", shared / "strategies", ignore=shutil.ignore_patterns("*.py")
    )
    (shared / "models").mkdir()
    slot = _free_slot()
    project = f"ktrdr-test-stack-{uuid.uuid4().hex[:8]}"
    settings = EnvSettings(project, slot, shared, "offline", uuid.uuid4().hex, uuid.uuid4().hex)
    (root / ".env.sandbox").write_text(render_env(settings, command="test_stack"))
    (root / ".env.sandbox").chmod(0o600)
    s = Stack(root, project, ports_for_slot(slot), shared, settings.db_password)
    try:
        started = time.monotonic()
        _compose(s, "up", "-d", "--wait", timeout=UP_TIMEOUT)
        # The stack declares no healthchecks (idle cost), so --wait means running, not ready:
        # readiness is what the gate checks; here the API answering with its database will do.
        wait_for(
            lambda: _api_ready(s),
            timeout=120,
            what="the API answering with its database",
            tolerate=STARTING,
        )
        print(f"stack {project} on slot {slot} up in {time.monotonic() - started:.1f}s")
        yield s
    finally:
        _compose(s, "down", "-v", "--remove-orphans", "--timeout", "5", timeout=180, check=False)
        for kind in ("container", "volume", "network"):
            listed = run(
                [
                    "docker",
                    kind,
                    "ls",
                    "-q",
                    "--filter",
                    f"label=com.docker.compose.project={project}",
                ]
                + (["-a"] if kind == "container" else []),
                check=False,
            )
            ids = listed.stdout.split()
            if ids:
                run(
                    ["docker", kind, "rm", "-f", *ids]
                    if kind == "container"
                    else ["docker", kind, "rm", *ids],
                    check=False,
                )


def _api_ready(stack: Stack) -> bool:
    try:
        body = httpx.get(f"{stack.api}/health", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(body, dict) and body.get("database") == "ok"


def test_health_is_ok_and_names_this_instance(stack: Stack) -> None:
    body = httpx.get(f"{stack.api}/health", timeout=10).json()

    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["instance_id"] == stack.project


def test_four_workers_are_registered_and_idle(stack: Stack) -> None:
    def idle() -> list[Any]:
        workers = httpx.get(f"{stack.api}/workers", timeout=10).json()
        return workers if [w["status"] for w in workers] == ["idle"] * 4 else []

    workers = wait_for(idle, timeout=30, what="4 idle workers", tolerate=STARTING)

    assert sorted((w["worker_type"], w["endpoint"]) for w in workers) == [
        ("backtest", "http://backtest-worker-1:8080"),
        ("backtest", "http://backtest-worker-2:8080"),
        ("training", "http://training-worker-1:8080"),
        ("training", "http://training-worker-2:8080"),
    ]


def test_a_backtest_round_trips_and_its_result_is_stored_in_postgres(stack: Stack) -> None:
    created = httpx.post(
        f"{stack.api}/operations",
        json={"operation_type": "backtest", "params": {"symbol": "AAPL", "timeframe": "1d"}},
        timeout=10,
    )
    assert created.status_code == 201
    operation_id = created.json()["operation_id"]

    def finished() -> Any:
        op = httpx.get(f"{stack.api}/operations/{operation_id}", timeout=10).json()
        return op if op["status"] in ("completed", "failed") else None

    op = wait_for(finished, timeout=60, what="backtest to finish", tolerate=STARTING)

    assert op["status"] == "completed", op["error"]
    assert op["worker_id"].startswith("backtest-worker-")
    assert op["result"]["num_trades"] == 9
    assert op["result"]["trades"][0]["entry_date"] == "2024-03-19"
    dsn = (
        f"postgresql://ktrdr:{stack.db_password}@127.0.0.1:{stack.ports.db}/ktrdr?connect_timeout=5"
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT status, (result->>'num_trades')::int FROM operations WHERE operation_id = %s",
            (operation_id,),
        ).fetchone()
    assert row == ("completed", 9)


def test_prometheus_scrapes_the_backend_as_an_up_target(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.ports.prometheus}/api/v1/targets"

    def backend_up() -> bool:
        targets = httpx.get(url, timeout=10).json()["data"]["activeTargets"]
        return any(t["labels"]["job"] == "backend" and t["health"] == "up" for t in targets)

    wait_for(backend_up, timeout=45, what="backend target up in Prometheus", tolerate=STARTING)


def test_grafana_and_jaeger_answer_on_their_slot_ports(stack: Stack) -> None:
    grafana = httpx.get(f"http://127.0.0.1:{stack.ports.grafana}/api/health", timeout=10)
    jaeger = httpx.get(f"http://127.0.0.1:{stack.ports.jaeger_ui}/", timeout=10)

    assert grafana.status_code == 200
    assert jaeger.status_code == 200


def test_editing_backend_source_changes_the_response_within_10_seconds(stack: Stack) -> None:
    init = stack.root / "ktrdr" / "__init__.py"
    text = init.read_text()
    version = f"0.0.0+reload{uuid.uuid4().hex[:6]}"
    assert '__version__ = "' in text

    started = time.monotonic()
    init.write_text(text.replace('__version__ = "', f'__version__ = "{version}"  # was "', 1))

    def reloaded() -> bool:
        return httpx.get(f"{stack.api}/health", timeout=2).json()["version"] == version

    wait_for(reloaded, timeout=10, what="backend serving the edited source", tolerate=STARTING)
    print(f"backend hot reload took {time.monotonic() - started:.1f}s")
    worker = f"http://127.0.0.1:{stack.ports.worker_base}/health"
    wait_for(
        lambda: httpx.get(worker, timeout=2).json()["version"] == version,
        timeout=15,
        what="backtest-worker-1 restarted on the edited source",
        tolerate=STARTING,
    )


def test_a_missing_shared_dir_fails_clearly_instead_of_mounting_an_empty_one(
    tmp_path: Path,
) -> None:
    _engine_ready()
    root = tmp_path / "ktrdr--noshared"
    _copy_project(root)
    missing = tmp_path / "never-initialised"
    project = f"ktrdr-test-noshared-{uuid.uuid4().hex[:8]}"
    settings = EnvSettings(project, _free_slot(), missing, "offline", "pw", "gpw")
    (root / ".env.sandbox").write_text(render_env(settings, command="test_stack"))
    s = Stack(root, project, ports_for_slot(settings.slot), missing, "pw")
    try:
        result = _compose(s, "up", "--no-start", "--no-deps", "backtest-worker-1", check=False)
    finally:
        _compose(s, "down", "-v", timeout=120, check=False)

    assert result.returncode != 0
    assert f"bind source path does not exist: {missing}/" in result.stderr
    assert not missing.exists()

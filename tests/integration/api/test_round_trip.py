"""Backend and real worker servers talking HTTP on 127.0.0.1: registration, heartbeats,
dispatch, computation on real files and the result stored in PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ktrdr.api.app import create_app
from ktrdr.api.settings import ApiSettings
from ktrdr.workers.app import create_app as create_worker_app
from ktrdr.workers.backtest import run_backtest
from ktrdr.workers.settings import WorkerSettings
from tests.support.api_server import free_port, serve
from tests.support.waiting import wait_for

SAMPLE = Path(__file__).parents[3] / "ktrdr" / "sample_data"


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    shutil.copytree(SAMPLE / "data", root / "data", ignore=shutil.ignore_patterns("*.py"))
    shutil.copytree(SAMPLE / "strategies", root / "strategies")
    (root / "models").mkdir()
    return root


@pytest.fixture
def stack(migrated_database: str, shared: Path) -> Iterator[tuple[httpx.Client, list[Any]]]:
    """A backend plus one backtest and one training worker (short heartbeat), all real servers
    on 127.0.0.1."""
    settings = ApiSettings(conninfo=migrated_database, instance_id="t", dispatch_interval_s=0.2)
    with ExitStack() as stack:
        api_url = stack.enter_context(serve(create_app(settings)))
        apps = []
        for worker_type in ("backtest", "training"):
            port = free_port()
            app = create_worker_app(
                WorkerSettings(
                    worker_type=worker_type,
                    worker_id=f"{worker_type}-worker-1",
                    endpoint=f"http://127.0.0.1:{port}",
                    api_url=api_url,
                    shared_root=shared,
                    heartbeat_interval_s=0.2,
                    register_retry_s=0.1,
                )
            )
            stack.enter_context(serve(app, port=port))
            apps.append(app)
        client = stack.enter_context(httpx.Client(base_url=f"{api_url}/api/v1", timeout=10))
        wait_for(lambda: len(_live(client)) == 2, timeout=10, what="two live workers")
        yield client, apps


def _live(client: httpx.Client) -> list[dict[str, Any]]:
    return [w for w in client.get("/workers").json() if w["status"] == "idle"]


def _finished(client: httpx.Client, operation_id: str) -> Any:
    def check() -> Any:
        op = client.get(f"/operations/{operation_id}").json()
        return op if op["status"] in ("completed", "failed") else None

    return check


def submit(client: httpx.Client, operation_type: str, **params: Any) -> dict[str, Any]:
    response = client.post("/operations", json={"operation_type": operation_type, "params": params})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_backtest_round_trips_and_its_result_is_stored(
    stack: tuple[httpx.Client, list[Any]], shared: Path, migrated_database: str
) -> None:
    client, _ = stack
    op = submit(client, "backtest", symbol="MSFT", timeframe="1d")

    done = wait_for(_finished(client, op["operation_id"]), timeout=20, what="operation finished")

    expected = run_backtest({"symbol": "MSFT"}, shared_root=shared).to_dict()
    assert done["status"] == "completed", done["error"]
    assert done["worker_id"] == "backtest-worker-1"
    assert done["result"] == expected
    with psycopg.connect(migrated_database) as conn:
        stored = conn.execute(
            "SELECT result->>'num_trades' FROM operations WHERE operation_id = %s",
            (op["operation_id"],),
        ).fetchone()
    assert stored == (str(expected["num_trades"]),)
    assert {w["status"] for w in client.get("/workers").json()} == {"idle"}


def test_training_writes_the_model_into_the_shared_models_dir(
    stack: tuple[httpx.Client, list[Any]], shared: Path
) -> None:
    client, _ = stack
    op = submit(client, "training", symbol="EURUSD")

    done = wait_for(_finished(client, op["operation_id"]), timeout=20, what="operation finished")

    assert done["status"] == "completed", done["error"]
    model = shared / "models" / f"EURUSD_1d_{op['operation_id']}.json"
    assert done["result"]["model_path"] == str(model)
    assert model.is_file()


def test_a_job_on_missing_data_fails_with_the_workers_error(
    stack: tuple[httpx.Client, list[Any]],
) -> None:
    client, _ = stack
    op = submit(client, "backtest", symbol="NOPE")

    done = wait_for(_finished(client, op["operation_id"]), timeout=20, what="operation finished")

    assert done["status"] == "failed"
    assert "NOPE_1d.csv does not exist" in done["error"]
    assert "init-shared" in done["error"]


def test_a_worker_registers_again_when_the_backend_forgot_it(
    stack: tuple[httpx.Client, list[Any]], migrated_database: str
) -> None:
    client, _ = stack
    with psycopg.connect(migrated_database) as conn:
        conn.execute("DELETE FROM workers")

    wait_for(lambda: len(_live(client)) == 2, timeout=10, what="two live workers")


def test_worker_health_and_job_type_checks(stack: tuple[httpx.Client, list[Any]]) -> None:
    _, apps = stack
    settings = apps[0].state.settings
    with httpx.Client(base_url=settings.endpoint, timeout=5) as worker:
        health = worker.get("/health").json()
        wrong = worker.post(
            "/jobs", json={"operation_id": "op_1", "operation_type": "training", "params": {}}
        )
        metrics = worker.get("/metrics").text

    assert health["worker_id"] == "backtest-worker-1"
    assert health["status"] == "ok"
    assert health["registered"] is True
    assert wrong.status_code == 400
    assert "this is a backtest worker" in wrong.json()["detail"]
    assert 'ktrdr_http_requests_total{method="GET",route="/health",status="200"}' in metrics

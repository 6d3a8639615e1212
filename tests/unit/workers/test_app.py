"""The worker's HTTP surface served by uvicorn on 127.0.0.1 (no backend: registration off)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ktrdr.workers.app import InvalidJob, Job, create_app
from ktrdr.workers.settings import WorkerSettings


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    settings = WorkerSettings(
        worker_type="backtest",
        worker_id="backtest-worker-1",
        endpoint="http://127.0.0.1:9",
        api_url="http://127.0.0.1:9",
        shared_root=tmp_path,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings, register=False), port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_health_names_the_worker_and_its_state(worker: str) -> None:
    health = httpx.get(f"{worker}/health").json()

    assert health["worker_id"] == "backtest-worker-1"
    assert health["worker_type"] == "backtest"
    assert (health["status"], health["busy"], health["registered"]) == ("ok", False, False)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "not a job"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"operation_type": "backtest"}', "operation_id must match"),
        (b'{"operation_id": "../etc", "operation_type": "backtest"}', "operation_id must match"),
        (b'{"operation_id": "op_1", "operation_type": 3}', "operation_type must be a string"),
        (b'{"operation_id": "op_1", "operation_type": "backtest", "params": []}', "params must"),
    ],
)
def test_a_body_that_is_not_a_job_is_answered_422_with_a_detail(
    worker: str, body: bytes, detail: str
) -> None:
    response = httpx.post(f"{worker}/jobs", content=body)

    assert response.status_code == 422
    assert detail in response.json()["detail"]


def test_a_job_of_the_other_type_is_refused_with_400(worker: str) -> None:
    job = {"operation_id": "op_1", "operation_type": "training", "params": {}}

    response = httpx.post(f"{worker}/jobs", json=job)

    assert response.status_code == 400
    assert response.json()["detail"] == "this is a backtest worker; cannot run training"


def test_metrics_count_requests_by_route_template(worker: str) -> None:
    httpx.get(f"{worker}/health")
    httpx.post(f"{worker}/jobs", content=b"{}")

    metrics = httpx.get(f"{worker}/metrics").text

    assert 'ktrdr_http_requests_total{method="GET",route="/health",status="200"} 1.0' in metrics
    assert 'ktrdr_http_requests_total{method="POST",route="/jobs",status="422"} 1.0' in metrics


def test_a_job_parsed_from_json_defaults_its_params() -> None:
    body: dict[str, Any] = {"operation_id": "op_1", "operation_type": "backtest"}

    assert Job.from_json(body) == Job("op_1", "backtest", {})
    with pytest.raises(InvalidJob):
        Job.from_json({**body, "params": None})

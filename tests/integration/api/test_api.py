"""The v1 API against a real PostgreSQL, with stand-in workers where a worker must receive jobs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from httpx import Client as Client

import ktrdr
from ktrdr.api.app import create_app
from ktrdr.api.settings import ApiSettings
from tests.support.api_server import RecordingWorker, serve
from tests.support.api_v1 import V1, register, workers_by_id
from tests.support.waiting import wait_for


def start_backtest(api: Client, **params: Any) -> dict[str, Any]:
    response = api.post(
        f"{V1}/operations",
        json={"operation_type": "backtest", "params": {"symbol": "AAPL", **params}},
    )
    assert response.status_code == 201, response.text
    return response.json()


def operation(api: Client, operation_id: str) -> dict[str, Any]:
    return api.get(f"{V1}/operations/{operation_id}").json()


def status_is(api: Client, operation_id: str, status: str) -> Any:
    return lambda: (op := operation(api, operation_id))["status"] == status and op


def test_health_reports_database_version_and_instance_id(api: Client) -> None:
    body = api.get(f"{V1}/health").json()

    assert body == {
        "status": "ok",
        "version": ktrdr.__version__,
        "database": "ok",
        "instance_id": "ktrdr--feat-a",
    }


def test_health_is_degraded_when_the_database_is_unreachable() -> None:
    settings = ApiSettings(conninfo="postgresql://nobody@127.0.0.1:9/none?connect_timeout=1")
    with serve(create_app(settings)) as url, Client(base_url=url, timeout=10) as client:
        health = client.get(f"{V1}/health")
        workers = client.get(f"{V1}/workers")

    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["database"] == "error"
    assert health.json()["instance_id"] is None
    assert workers.status_code == 503
    assert "database unavailable" in workers.json()["detail"]


def test_openapi_docs_are_served_under_api_v1(api: Client) -> None:
    assert api.get(f"{V1}/docs").status_code == 200
    paths = api.get(f"{V1}/openapi.json").json()["paths"]
    assert f"{V1}/operations/{{operation_id}}/result" in paths


def test_registered_workers_are_listed_idle_with_their_endpoint(api: Client) -> None:
    register(api, "backtest-worker-1", "http://backtest-worker-1:8080")
    register(api, "training-worker-1", "http://training-worker-1:8080", "training")

    workers = api.get(f"{V1}/workers").json()

    assert [(w["worker_id"], w["worker_type"], w["status"], w["endpoint"]) for w in workers] == [
        ("backtest-worker-1", "backtest", "idle", "http://backtest-worker-1:8080"),
        ("training-worker-1", "training", "idle", "http://training-worker-1:8080"),
    ]
    assert workers[0]["last_heartbeat"]


def test_registration_rejects_an_unknown_worker_type(api: Client) -> None:
    response = api.post(
        f"{V1}/workers/register",
        json={"worker_id": "w1", "worker_type": "mining", "endpoint": "http://w1:8080"},
    )
    assert response.status_code == 422


def test_heartbeat_of_an_unknown_worker_asks_it_to_register_again(api: Client) -> None:
    response = api.post(f"{V1}/workers/ghost/heartbeat")

    assert response.status_code == 404
    assert "register again" in response.json()["detail"]


@pytest.mark.timing
def test_a_worker_that_misses_heartbeats_becomes_unreachable_until_it_beats_again(
    api: Client, migrated_database: str
) -> None:
    register(api, "backtest-worker-1", "http://backtest-worker-1:8080")
    with psycopg.connect(migrated_database) as conn:  # last heard from 20 s ago (timeout 15 s)
        conn.execute("UPDATE workers SET last_heartbeat = now() - interval '20 seconds'")

    assert workers_by_id(api)["backtest-worker-1"]["status"] == "unreachable"

    assert api.post(f"{V1}/workers/backtest-worker-1/heartbeat").status_code == 200
    assert workers_by_id(api)["backtest-worker-1"]["status"] == "idle"


def test_unknown_operation_type_is_rejected_with_the_valid_ones(api: Client) -> None:
    response = api.post(f"{V1}/operations", json={"operation_type": "mining", "params": {}})

    assert response.status_code == 422
    assert "backtest, training" in response.json()["detail"]


def test_an_operation_waits_pending_until_a_worker_of_its_type_registers(
    api: Client, recording_worker: RecordingWorker
) -> None:
    register(api, "training-worker-1", "http://127.0.0.1:9", "training")
    created = start_backtest(api)
    assert created["status"] == "pending"
    assert created["operation_type"] == "backtest"
    assert created["params"] == {"symbol": "AAPL"}
    assert created["worker_id"] is None
    assert created["created_at"]

    register(api, "backtest-worker-1", recording_worker.endpoint)

    running = wait_for(
        status_is(api, created["operation_id"], "running"), timeout=10, what="operation running"
    )
    assert running["worker_id"] == "backtest-worker-1"
    wait_for(lambda: recording_worker.jobs, timeout=10, what="a job sent to the worker")
    assert recording_worker.jobs == [
        {
            "operation_id": created["operation_id"],
            "operation_type": "backtest",
            "params": {"symbol": "AAPL"},
        }
    ]
    assert workers_by_id(api)["backtest-worker-1"]["status"] == "busy"


def test_a_reported_result_completes_the_operation_and_frees_the_worker(
    api: Client, recording_worker: RecordingWorker
) -> None:
    register(api, "backtest-worker-1", recording_worker.endpoint)
    first, second = start_backtest(api), start_backtest(api, symbol="MSFT")
    wait_for(status_is(api, first["operation_id"], "running"), timeout=10, what="first running")
    assert operation(api, second["operation_id"])["status"] == "pending"

    response = api.post(
        f"{V1}/operations/{first['operation_id']}/result",
        json={"worker_id": "backtest-worker-1", "status": "completed", "result": {"trades": 3}},
    )

    assert response.status_code == 200
    done = operation(api, first["operation_id"])
    assert (done["status"], done["result"], done["error"]) == ("completed", {"trades": 3}, None)
    wait_for(status_is(api, second["operation_id"], "running"), timeout=10, what="second running")
    wait_for(lambda: len(recording_worker.jobs) == 2, timeout=10, what="two jobs sent")
    assert [job["params"]["symbol"] for job in recording_worker.jobs] == ["AAPL", "MSFT"]


def test_a_failed_result_stores_the_error(api: Client, recording_worker: RecordingWorker) -> None:
    register(api, "backtest-worker-1", recording_worker.endpoint)
    op = start_backtest(api)
    wait_for(status_is(api, op["operation_id"], "running"), timeout=10, what="operation running")

    api.post(
        f"{V1}/operations/{op['operation_id']}/result",
        json={"worker_id": "backtest-worker-1", "status": "failed", "error": "no data for X"},
    )

    failed = operation(api, op["operation_id"])
    assert (failed["status"], failed["error"], failed["result"]) == (
        "failed",
        "no data for X",
        None,
    )


def test_results_for_unknown_or_not_running_operations_are_refused(
    api: Client, recording_worker: RecordingWorker
) -> None:
    outcome = {"worker_id": "backtest-worker-1", "status": "completed", "result": {}}
    assert api.post(f"{V1}/operations/op_nope/result", json=outcome).status_code == 404

    op = start_backtest(api)
    refused = api.post(f"{V1}/operations/{op['operation_id']}/result", json=outcome)

    assert refused.status_code == 409
    assert "is pending" in refused.json()["detail"]


def test_operations_are_spread_over_idle_workers_of_the_type(api: Client) -> None:
    workers = [RecordingWorker(), RecordingWorker()]
    try:
        register(api, "backtest-worker-1", workers[0].endpoint)
        register(api, "backtest-worker-2", workers[1].endpoint)
        ops = [start_backtest(api), start_backtest(api)]

        running = [
            wait_for(status_is(api, op["operation_id"], "running"), timeout=10, what="running")
            for op in ops
        ]

        assert sorted(op["worker_id"] for op in running) == [
            "backtest-worker-1",
            "backtest-worker-2",
        ]
        wait_for(lambda: [len(w.jobs) for w in workers] == [1, 1], timeout=10, what="a job each")
    finally:
        for worker in workers:
            worker.close()


def test_a_refused_hand_over_puts_the_operation_back_and_marks_the_worker_unreachable(
    api: Client,
) -> None:
    refusing = RecordingWorker(status=500)
    try:
        register(api, "backtest-worker-1", refusing.endpoint)
        op = start_backtest(api)

        wait_for(lambda: refusing.jobs, timeout=10, what="a job sent to the refusing worker")
        wait_for(
            lambda: workers_by_id(api)["backtest-worker-1"]["status"] == "unreachable",
            timeout=10,
            what="backtest-worker-1 unreachable",
        )

        assert operation(api, op["operation_id"])["status"] == "pending"
    finally:
        refusing.close()


@pytest.mark.timing
def test_an_operation_of_a_worker_that_stops_heartbeating_fails(
    api: Client, recording_worker: RecordingWorker, migrated_database: str
) -> None:
    register(api, "backtest-worker-1", recording_worker.endpoint)
    op = start_backtest(api)
    wait_for(status_is(api, op["operation_id"], "running"), timeout=10, what="operation running")

    with psycopg.connect(migrated_database) as conn:
        conn.execute("UPDATE workers SET last_heartbeat = now() - interval '1 minute'")

    failed = wait_for(
        status_is(api, op["operation_id"], "failed"), timeout=10, what="operation failed"
    )
    assert failed["error"] == "worker backtest-worker-1 stopped sending heartbeats"
    with psycopg.connect(migrated_database) as conn:
        freed = conn.execute(
            "SELECT status, current_operation_id FROM workers WHERE worker_id = %s",
            ("backtest-worker-1",),
        ).fetchone()
    assert freed == ("idle", None)  # in the same statement as the failure


def test_a_worker_that_registers_again_fails_the_operation_it_was_running(
    api: Client, recording_worker: RecordingWorker
) -> None:
    register(api, "backtest-worker-1", recording_worker.endpoint)
    op = start_backtest(api)
    wait_for(status_is(api, op["operation_id"], "running"), timeout=10, what="operation running")

    register(api, "backtest-worker-1", "http://127.0.0.1:9")

    failed = operation(api, op["operation_id"])
    assert (failed["status"], failed["error"]) == (
        "failed",
        "worker backtest-worker-1 restarted before finishing",
    )


def test_operations_can_be_listed_by_status(api: Client, recording_worker: RecordingWorker) -> None:
    first = start_backtest(api)
    register(api, "backtest-worker-1", recording_worker.endpoint)
    wait_for(status_is(api, first["operation_id"], "running"), timeout=10, what="first running")
    second = start_backtest(api)

    pending = api.get(f"{V1}/operations", params={"status": "pending"}).json()
    everything = api.get(f"{V1}/operations").json()

    assert [op["operation_id"] for op in pending] == [second["operation_id"]]
    assert {op["operation_id"] for op in everything} == {
        first["operation_id"],
        second["operation_id"],
    }
    assert api.get(f"{V1}/operations", params={"status": "bogus"}).status_code == 422
    assert api.get(f"{V1}/operations/op_missing").status_code == 404


def test_metrics_count_requests_by_route_and_operations_by_status(api: Client) -> None:
    start_backtest(api)
    api.get(f"{V1}/health")

    text = api.get("/metrics").text

    assert (
        'ktrdr_http_requests_total{method="POST",route="/api/v1/operations",status="201"} 1.0'
        in text
    )
    assert 'ktrdr_http_request_duration_seconds_count{method="GET",route="/api/v1/health"}' in text
    assert 'ktrdr_operations{status="pending",type="backtest"} 1.0' in text

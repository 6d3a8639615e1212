"""The instance works end to end: run inside its compose network by `make test-e2e`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.e2e_api import start_operation, wait_for_operation

# Pinned for the packaged sample (ktrdr/sample_data/data/AAPL_1d.csv, ma_crossover 5/20,
# 10000 capital). If the sample is regenerated, these change with it on purpose.
EXPECTED_TRADES = 9
EXPECTED_FIRST_TRADE = {
    "entry_date": "2024-03-19",
    "entry_price": 189.07,
    "exit_date": "2024-03-22",
    "exit_price": 186.48,
}
EXPECTED_TOTAL_RETURN = 0.08441937
HEALTH_REQUESTS = 5


def test_health_reports_this_instances_id(api: httpx.Client, instance_id: str) -> None:
    body = api.get("/health").json()
    assert body["status"] == "ok", body
    assert body["database"] == "ok", body
    assert body["instance_id"] == instance_id


def test_four_workers_are_registered_and_reachable(api: httpx.Client) -> None:
    workers = api.get("/workers").json()
    by_type: dict[str, int] = {}
    for worker in workers:
        assert worker["status"] != "unreachable", worker
        by_type[worker["worker_type"]] = by_type.get(worker["worker_type"], 0) + 1
    assert by_type == {"backtest": 2, "training": 2}, workers


def test_shared_data_is_the_packaged_sample(shared_root: Path) -> None:
    shared = shared_root / "data" / "AAPL_1d.csv"
    packaged = Path("/app/ktrdr/sample_data/data/AAPL_1d.csv")
    assert shared.is_file(), f"{shared} missing: run `ktrdr sandbox init-shared`"
    if packaged.is_file():
        assert shared.read_bytes() == packaged.read_bytes(), (
            "shared AAPL_1d.csv differs from the packaged sample: "
            "run `ktrdr sandbox init-shared --force`"
        )


def test_backtest_on_the_shared_sample_returns_the_expected_trades(
    backtest: dict[str, Any],
) -> None:
    assert backtest["status"] == "completed", backtest
    assert backtest["worker_id"], backtest
    result = backtest["result"]
    assert result["num_trades"] == EXPECTED_TRADES
    assert len(result["trades"]) == EXPECTED_TRADES
    first = {key: result["trades"][0][key] for key in EXPECTED_FIRST_TRADE}
    assert first == EXPECTED_FIRST_TRADE
    assert result["total_return"] == pytest.approx(EXPECTED_TOTAL_RETURN, abs=1e-6)


def test_training_writes_a_model_file_into_the_shared_models_dir(
    api: httpx.Client, shared_root: Path
) -> None:
    operation_id = start_operation(api, "training", {"symbol": "AAPL", "timeframe": "1d"})
    operation = wait_for_operation(api, operation_id)
    assert operation["status"] == "completed", operation
    model = shared_root / "models" / f"AAPL_1d_{operation_id}.json"
    assert model.is_file(), f"{model} not written; result: {operation['result']}"
    assert isinstance(json.loads(model.read_text()), dict)


def _health_requests_counted(api: httpx.Client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{str(api.base_url).removesuffix('/api/v1/')}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total") and "/api/v1/health" in sample.labels.values():
                total += sample.value
    return total


def test_metrics_count_the_requests_just_made(api: httpx.Client) -> None:
    before = _health_requests_counted(api)
    for _ in range(HEALTH_REQUESTS):
        assert api.get("/health").status_code == 200
    after = _health_requests_counted(api)
    assert after - before >= HEALTH_REQUESTS, (before, after)


def _jaeger(url: str, path: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", timeout=10)


def test_a_trace_of_the_backtest_is_visible_in_jaeger(backtest: dict[str, Any]) -> None:
    url = os.environ.get("KTRDR_E2E_JAEGER_URL", "http://jaeger:16686").rstrip("/")
    probe = _jaeger(url, "/api/services")
    if probe.headers.get("X-Ktrdr-Standin") or (
        probe.headers.get("content-type", "").startswith("application/json")
        and probe.json().get("standin")
    ):
        pytest.skip("Jaeger stand-in in use (offline images): it stores no traces")
    deadline = time.monotonic() + 45
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = [s for s in _jaeger(url, "/api/services").json().get("data") or [] if "ktrdr" in s]
        for service in seen:
            traces = _jaeger(url, f"/api/traces?service={service}&limit=50&lookback=1h").json()
            for trace in traces.get("data") or []:
                names = [span.get("operationName", "") for span in trace.get("spans", [])]
                if any("operations" in name and "POST" in name for name in names):
                    return
        time.sleep(1)
    pytest.fail(f"no POST /api/v1/operations trace in Jaeger within 45s (services: {seen})")

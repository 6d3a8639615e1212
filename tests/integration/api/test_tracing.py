from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx
import pytest

from ktrdr.api.app import create_app
from ktrdr.api.settings import ApiSettings
from ktrdr.workers.app import create_app as create_worker_app
from ktrdr.workers.settings import WorkerSettings
from tests.support.api_server import serve
from tests.support.waiting import wait_for


class OtlpCollector:
    """A stand-in OTLP/HTTP collector: a real HTTP server recording POST /v1/traces bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/traces":
                    collector.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, daemon=True).start()


def test_request_spans_are_exported_over_otlp_http(
    migrated_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = OtlpCollector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    settings = ApiSettings(conninfo=migrated_database)

    with serve(create_app(settings)) as url:
        httpx.post(
            f"{url}/api/v1/operations",
            json={"operation_type": "backtest", "params": {"symbol": "AAPL"}},
        )
    collector.server.shutdown()

    wait_for(lambda: collector.bodies, timeout=5, what="spans exported")
    exported = b"".join(collector.bodies)
    assert b"ktrdr-backend" in exported
    assert b"/api/v1/operations" in exported


def test_an_absent_trace_collector_neither_breaks_nor_slows_requests(
    migrated_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    settings = ApiSettings(conninfo=migrated_database)

    started = time.monotonic()
    with serve(create_app(settings)) as url:
        statuses = [httpx.get(f"{url}/api/v1/workers").status_code for _ in range(20)]
        served = time.monotonic() - started
    total = time.monotonic() - started

    assert statuses == [200] * 20
    assert served < 5
    assert total < 10


def test_the_otlp_exporter_is_imported_only_when_spans_leave(
    migrated_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It brings requests and protobuf (~5 MiB): an idle server exports nothing."""
    collector = OtlpCollector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    app = create_app(ApiSettings(conninfo=migrated_database))
    provider, exporter = app.state.tracer_provider, app.state.span_exporter

    with serve(app) as url:
        httpx.get(f"{url}/api/v1/health")  # a poll: not traced
        provider.force_flush()
        assert not exporter.loaded
        httpx.get(f"{url}/api/v1/workers")
        provider.force_flush()
        assert exporter.loaded
    collector.server.shutdown()

    assert b"/api/v1/workers" in b"".join(collector.bodies)


def test_a_workers_requests_are_traced_and_its_polls_are_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    collector = OtlpCollector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    settings = WorkerSettings(
        worker_type="backtest",
        worker_id="backtest-worker-1",
        endpoint="http://127.0.0.1:9",
        api_url="http://127.0.0.1:9",
        shared_root=tmp_path,
    )
    app = create_worker_app(settings, register=False)

    with serve(app) as url:
        httpx.get(f"{url}/health")
        httpx.get(f"{url}/metrics")
        refused = httpx.post(f"{url}/jobs", json={"operation_id": "op_1", "operation_type": "x"})
        app.state.tracer_provider.force_flush()
    collector.server.shutdown()

    assert refused.status_code == 400
    exported = b"".join(collector.bodies)
    assert b"ktrdr-backtest-worker" in exported
    assert b"POST /jobs" in exported
    assert b"/health" not in exported
    assert b"/metrics" not in exported

"""Prometheus metrics and OpenTelemetry tracing, shared by the backend and the workers.

Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT is set, and spans leave through a batch
processor on a background thread, so an absent collector never slows a request down.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Polled every few seconds by every worker, by Prometheus and by the gate: spans and access log
# lines of them would be noise, and producing them was a steady share of an idle stack's CPU.
POLLED = ("metrics", "health", "heartbeat")
EXCLUDED_FROM_TRACES = ",".join(POLLED)


class _PolledRequestsFilter(logging.Filter):
    """Keeps answered polls out of uvicorn's access log (a failed one still shows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:  # not uvicorn's access line
            return True
        _, _, path, _, status = args
        last = str(path).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return not (last in POLLED and isinstance(status, int) and status < 400)


def quiet_polled_requests() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _PolledRequestsFilter) for f in logger.filters):
        logger.addFilter(_PolledRequestsFilter())


def instrument_http_metrics(app: Starlette, registry: CollectorRegistry) -> None:
    """Count requests and time them by route template, method and status code."""
    requests = Counter(
        "ktrdr_http_requests_total",
        "HTTP requests handled",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "ktrdr_http_request_duration_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
    )
    app.add_middleware(_HttpMetrics, requests=requests, latency=latency)


class _HttpMetrics:
    """Plain ASGI middleware (`@app.middleware("http")` costs a task group and memory streams
    per request: a third of a heartbeat's CPU in the backend)."""

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # set by the router
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def metrics_response(registry: CollectorRegistry) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def setup_tracing(app: Starlette, *, service_name: str) -> Any | None:
    """Instrument the app and export spans over OTLP HTTP; returns the provider (to shut down)
    or None when no endpoint is configured."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from ktrdr.api.otlp import LazyOtlpSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = LazyOtlpSpanExporter(f"{endpoint.rstrip('/')}/v1/traces", timeout_s=2)
    provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=2000))
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Global, so spans made outside requests (dispatch) are exported too; set once.
        trace.set_tracer_provider(provider)
    _instrument(app, provider)
    app.state.tracer_provider, app.state.span_exporter = provider, exporter
    return provider


def _instrument(app: Starlette, provider: Any) -> None:
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and isinstance(app, fastapi.FastAPI):  # the backend
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=provider, excluded_urls=EXCLUDED_FROM_TRACES
        )
        return
    # The workers (plain Starlette): spans named "METHOD /path", fine for paths without ids.
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app.add_middleware(
        OpenTelemetryMiddleware, tracer_provider=provider, excluded_urls=EXCLUDED_FROM_TRACES
    )


def shutdown_tracing(provider: Any | None) -> None:
    if provider is not None:
        provider.shutdown()

"""Prometheus metrics and OpenTelemetry tracing, shared by the backend and the workers.

Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT is set, and spans leave through a batch
processor on a background thread, so an absent collector never slows a request down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

# Polled every few seconds by every worker and by Prometheus: spans of them would be noise,
# and exporting them was a steady share of an idle stack's CPU.
EXCLUDED_FROM_TRACES = "metrics,health,heartbeat"


def instrument_http_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
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

    @app.middleware("http")
    async def _record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            requests.labels(request.method, route, str(status)).inc()
            latency.labels(request.method, route).observe(time.perf_counter() - started)


def metrics_response(registry: CollectorRegistry) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def setup_tracing(app: FastAPI, *, service_name: str) -> Any | None:
    """Instrument the app and export spans over OTLP HTTP; returns the provider (to shut down)
    or None when no endpoint is configured."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=2)
    provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=2000))
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Global, so spans made outside requests (dispatch) are exported too; set once.
        trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=EXCLUDED_FROM_TRACES
    )
    return provider


def shutdown_tracing(provider: Any | None) -> None:
    if provider is not None:
        provider.shutdown()

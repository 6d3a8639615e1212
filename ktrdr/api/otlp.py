"""The OTLP/HTTP span exporter, imported when the first spans leave.

It brings requests and protobuf (~5 MiB of a ~50 MiB server), which a server nobody has called
yet does not need: a worker waiting for its first job exports nothing (its polls are not traced).
Imported by setup_tracing only, so the SDK stays unloaded while tracing is off.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class LazyOtlpSpanExporter(SpanExporter):
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url, self.timeout_s = url, timeout_s
        self._exporter: SpanExporter | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._exporter is not None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._get().export(spans)

    def shutdown(self) -> None:
        with self._lock:
            if self._exporter is not None:
                self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            exporter = self._exporter
        return exporter.force_flush(timeout_millis) if exporter is not None else True

    def _get(self) -> SpanExporter:
        with self._lock:
            if self._exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                self._exporter = OTLPSpanExporter(endpoint=self.url, timeout=self.timeout_s)
            return self._exporter

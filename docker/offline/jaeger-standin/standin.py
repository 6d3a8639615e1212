"""Offline stand-in for Jaeger all-in-one (not Jaeger).

UI on 16686 (`/`, `/api/services` with "standin": true so trace tests can skip), admin health on
14269, OTLP HTTP on 4318 (POST /v1/traces -> 200; only the service.name of each exported resource
is kept, from protobuf or JSON, and listed by /api/services), OTLP gRPC on 4317 (accepts and
drains TCP connections; no gRPC).
"""

from __future__ import annotations

import json
import signal
import socketserver
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<!doctype html><title>Jaeger UI stand-in</title><p>Offline stand-in, not Jaeger.</p>\n"
received = {"trace_posts": 0}
services: set[str] = set()


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | None]]:
    """(field number, bytes for length-delimited fields else None) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
            yield key >> 3, None
        elif wire == 2:
            size, i = _varint(buf, i)
            yield key >> 3, buf[i : i + size]
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            yield key >> 3, None
        else:
            raise ValueError(f"unsupported wire type {wire}")


def protobuf_service_names(body: bytes) -> set[str]:
    """ExportTraceServiceRequest.resource_spans[].resource.attributes["service.name"]."""
    names = set()
    for number, resource_spans in _fields(body):
        if number != 1 or resource_spans is None:
            continue
        for number2, resource in _fields(resource_spans):
            if number2 != 1 or resource is None:
                continue
            for number3, attribute in _fields(resource):
                if number3 != 1 or attribute is None:
                    continue
                parts = dict(_fields(attribute))
                if parts.get(1) == b"service.name" and parts.get(2):
                    value = dict(_fields(parts[2] or b"")).get(1)
                    if value:
                        names.add(value.decode())
    return names


def json_service_names(body: bytes) -> set[str]:
    names = set()
    for spans in json.loads(body).get("resourceSpans", []):
        for attribute in spans.get("resource", {}).get("attributes", []):
            if attribute.get("key") == "service.name":
                names.add(attribute.get("value", {}).get("stringValue", ""))
    return names - {""}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Ktrdr-Standin", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        port = self.server.server_address[1]
        if port == 14269:
            self._send(200, b'{"status":"Server available","standin":true}')
        elif path == "/api/services":
            names = sorted(services)
            body = {"data": names, "total": len(names), "errors": None, "standin": True}
            body.update(received)
            self._send(200, json.dumps(body).encode())
        elif path.startswith("/api/"):
            self._send(200, json.dumps({"data": [], "total": 0, "standin": True}).encode())
        else:
            self._send(200, PAGE, "text/html; charset=utf-8")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        content_type = self.headers.get("Content-Type", "application/x-protobuf")
        if path == "/v1/traces":
            received["trace_posts"] += 1
            try:
                parse = json_service_names if "json" in content_type else protobuf_service_names
                services.update(parse(body))
            except (ValueError, IndexError, UnicodeDecodeError, AttributeError):
                pass  # a stand-in: a malformed export is still acknowledged
        if path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            # An empty ExportTraceServiceResponse: zero bytes in protobuf, {} in JSON.
            body = b"{}" if "json" in content_type else b""
            self._send(200, body, content_type)
        else:
            self._send(404, b'{"error":"not found"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


class Drain(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while self.request.recv(65536):
            pass


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    # As PID 1 a process without a handler ignores SIGTERM: `docker stop` would wait 10 s.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    servers: list[socketserver.BaseServer] = [
        ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in (16686, 14269, 4318)
    ]
    servers.append(TCPServer(("0.0.0.0", 4317), Drain))
    # No poll interval: the default wakes each server every 0.5 s to look for a shutdown()
    # that is never called.
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, args=(None,), daemon=True).start()
    servers[0].serve_forever(poll_interval=None)


if __name__ == "__main__":
    main()

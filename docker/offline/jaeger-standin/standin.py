"""Offline stand-in for Jaeger all-in-one (not Jaeger).

UI on 16686 (`/`, `/api/services` with "standin": true so trace tests can skip), admin health on
14269, OTLP HTTP on 4318 (POST /v1/traces -> 200, spans are counted, not stored), OTLP gRPC on
4317 (accepts and drains TCP connections; no gRPC).
"""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<!doctype html><title>Jaeger UI stand-in</title><p>Offline stand-in, not Jaeger.</p>\n"
received = {"trace_posts": 0}


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
            body = {"data": [], "total": 0, "errors": None, "standin": True, **received}
            self._send(200, json.dumps(body).encode())
        elif path.startswith("/api/"):
            self._send(200, json.dumps({"data": [], "total": 0, "standin": True}).encode())
        else:
            self._send(200, PAGE, "text/html; charset=utf-8")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path.split("?", 1)[0] in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            received["trace_posts"] += 1
            content_type = self.headers.get("Content-Type", "application/x-protobuf")
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
    servers: list[socketserver.BaseServer] = [
        ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in (16686, 14269, 4318)
    ]
    servers.append(TCPServer(("0.0.0.0", 4317), Drain))
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()

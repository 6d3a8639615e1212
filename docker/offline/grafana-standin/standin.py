"""Offline stand-in for Grafana (not Grafana): GET /api/health and / on port 3000."""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))
PAGE = b"<!doctype html><title>Grafana stand-in</title><p>Offline stand-in, not Grafana.</p>\n"


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Ktrdr-Standin", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/health":
            body = {"commit": "standin", "database": "ok", "version": "standin", "standin": True}
            self._send(200, json.dumps(body).encode(), "application/json")
        elif path in ("/", "/login"):
            self._send(200, PAGE, "text/html; charset=utf-8")
        else:
            self._send(404, b'{"message":"Not found"}', "application/json")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    # As PID 1 a process without a handler ignores SIGTERM: `docker stop` would wait 10 s.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # No poll interval: the default wakes every 0.5 s to look for a shutdown() never called.
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever(poll_interval=None)

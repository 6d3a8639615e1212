"""A real HTTP server on 127.0.0.1 (port 0) that answers like the KTRDR v1 API.

It stands in for the backend in CLI tests, which must not need PostgreSQL; it speaks real HTTP,
so the CLI's client, error handling and rendering are exercised end to end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NOT_SET: Any = object()

OPERATION = {
    "operation_id": "op-1",
    "operation_type": "backtest",
    "status": "completed",
    "created_at": "2026-11-27T10:00:00Z",
    "worker_id": "backtest-1",
    "params": {"symbol": "AAPL"},
    "result": {"trades": 3},
    "error": None,
}


class StandinApiState:
    def __init__(self) -> None:
        self.health: dict[str, Any] = {
            "status": "ok",
            "version": "0.1.0",
            "database": "ok",
            "instance_id": "ktrdr--feat-a",
        }
        self.workers = [
            {
                "worker_id": "backtest-1",
                "worker_type": "backtest",
                "status": "idle",
                "endpoint": "http://backtest-worker-1:5003",
                "last_heartbeat": "2026-11-27T10:00:00Z",
            }
        ]
        self.operations = {"op-1": dict(OPERATION)}
        self.posted: list[dict[str, Any]] = []
        self.gets = 0  # GET requests answered (polls, among others)
        self.polls_until_complete = 0
        self.fails_with: str | None = None  # the running operation ends failed with this error
        # Set to answer every request with this body (HTTP 200): some other service on the port.
        self.every_body: Any = NOT_SET


def _advance(state: StandinApiState, op: dict[str, Any]) -> dict[str, Any]:
    """A running operation completes (or fails) once its polls are used up."""
    if op["status"] == "running":
        if state.polls_until_complete <= 0 and state.fails_with:
            op.update(status="failed", error=state.fails_with)
        elif state.polls_until_complete <= 0:
            op["status"] = "completed"
            op["result"] = {"trades": 2}
        state.polls_until_complete -= 1
    return op


def _create(state: StandinApiState, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if payload.get("operation_type") not in ("backtest", "training"):
        return 422, {"detail": "unknown operation_type"}
    op = dict(OPERATION, operation_id="op-2", status="running", result=None)
    op.update(operation_type=payload["operation_type"], params=payload["params"])
    state.operations["op-2"] = op
    return 201, op


def _handler_for(state: StandinApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # silence test output
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.gets += 1
            path = self.path.split("?")[0]
            if state.every_body is not NOT_SET:
                self._send(200, state.every_body)
            elif path == "/api/v1/health":
                self._send(200, state.health)
            elif path == "/api/v1/workers":
                self._send(200, state.workers)
            elif path == "/api/v1/operations":
                self._send(200, list(state.operations.values()))
            elif path.startswith("/api/v1/operations/"):
                op = state.operations.get(path.rsplit("/", 1)[1])
                if op is None:
                    self._send(404, {"detail": "operation not found"})
                else:
                    self._send(200, _advance(state, op))
            else:
                self._send(404, {"detail": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            state.posted.append(payload)
            if state.every_body is not NOT_SET:
                self._send(200, state.every_body)
                return
            self._send(*_create(state, payload))

    return Handler


@contextmanager
def standin_api_server(port: int = 0) -> Iterator[tuple[str, StandinApiState]]:
    """On `port` (default: any free one)."""
    state = StandinApiState()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(state))
    # A short poll: shutdown() waits up to one poll interval, and every test shuts one down.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()

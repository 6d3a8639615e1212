"""The worker's HTTP client to the backend (JsonPoster) against a real HTTP/1.1 server on
127.0.0.1: one kept-alive connection, and a new one when the server closed it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ktrdr.workers.agent import BackendLink, JsonPoster
from ktrdr.workers.settings import WorkerSettings


class BackendStandIn:
    """Records (path, JSON body, connection number) per POST; answers 200, or 404 for paths
    ending in /missing, or 503 to the first `refuse_registrations` registrations (a backend
    still starting); can close every idle connection (as a server's keep-alive timeout does)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any, int]] = []
        self.refuse_registrations = 0
        self.connections: list[socket.socket] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                stand_in.connections.append(self.connection)
                self.number = len(stand_in.connections)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                stand_in.requests.append((self.path, body, self.number))
                status = 404 if self.path.endswith("/missing") else 200
                registrations = [r for r in stand_in.requests if r[0].endswith("/register")]
                if self.path.endswith("/register") and len(registrations) <= (
                    stand_in.refuse_registrations
                ):
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close_idle_connections(self) -> None:
        for conn in self.connections:
            conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[BackendStandIn]:
    stand_in = BackendStandIn()
    yield stand_in
    stand_in.close()


def test_posts_json_under_the_base_path_over_one_kept_alive_connection(
    backend: BackendStandIn,
) -> None:
    poster = JsonPoster(backend.url)

    statuses = [
        poster.post("/workers/register", {"worker_id": "w1"}),
        poster.post("/workers/w1/heartbeat"),
        poster.post("/workers/w1/heartbeat"),
        poster.post("/workers/missing"),
    ]
    poster.close()

    assert statuses == [200, 200, 200, 404]
    assert backend.requests == [
        ("/api/v1/workers/register", {"worker_id": "w1"}, 1),
        ("/api/v1/workers/w1/heartbeat", None, 1),
        ("/api/v1/workers/w1/heartbeat", None, 1),
        ("/api/v1/workers/missing", None, 1),
    ]


def test_a_connection_the_server_closed_meanwhile_is_replaced_without_an_error(
    backend: BackendStandIn,
) -> None:
    poster = JsonPoster(backend.url)
    assert poster.post("/workers/w1/heartbeat") == 200

    backend.close_idle_connections()

    assert poster.post("/workers/w1/heartbeat") == 200
    assert [number for _, _, number in backend.requests] == [1, 2]
    poster.close()


def test_no_server_raises_an_oserror_and_the_next_post_tries_again() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    poster = JsonPoster(f"http://127.0.0.1:{port}/api/v1", timeout=2)

    with pytest.raises(ConnectionRefusedError):
        poster.post("/workers/w1/heartbeat")
    with pytest.raises(ConnectionRefusedError):
        poster.post("/workers/w1/heartbeat")


@pytest.mark.timing
def test_registration_retries_soon_then_backs_off_to_the_configured_interval(
    backend: BackendStandIn,
) -> None:
    """The backend answers a moment after the workers start: the first retries come quickly
    (the gate waits for the registrations), later ones back off to register_retry_s, and once
    registered the link only heartbeats. The waits are recorded instead of slept."""
    backend.refuse_registrations = 5
    settings = WorkerSettings(
        worker_type="backtest",
        worker_id="backtest-1",
        endpoint="http://backtest-1:8080",
        api_url=backend.url.removesuffix("/api/v1"),
        shared_root=Path("/shared"),
        register_retry_s=1.0,
        heartbeat_interval_s=5.0,
    )
    link = BackendLink(settings)
    waits: list[float] = []

    def recorded_wait(timeout: float | None = None) -> bool:
        waits.append(float(timeout or 0))
        if len(waits) == 7:
            link.stop_requested.set()
        return link.stop_requested.is_set()

    link.stop_requested.wait = recorded_wait  # type: ignore[method-assign]
    link.run_until_stopped()
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0, 5.0, 5.0]
    paths = [path for path, _, _ in backend.requests]
    assert paths == ["/api/v1/workers/register"] * 6 + ["/api/v1/workers/backtest-1/heartbeat"]

"""A real PostgreSQL for the API tests, and a fresh database per test.

Where the server comes from, first match wins: KTRDR_TEST_DATABASE_URL (an admin DSN); the
Debian PostgreSQL binaries on this machine (a throwaway cluster, started once per session)
outside CI; otherwise the offline postgres Docker image (tests/support/engine.py), which
skips without an engine, or fails when CI is set.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_BIN_DIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres_admin_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    if os.environ.get("KTRDR_TEST_DATABASE_URL"):
        yield os.environ["KTRDR_TEST_DATABASE_URL"]
        return
    bin_dir = next((d for d in PG_BIN_DIRS if (d / "initdb").exists()), None)
    local_ok = bin_dir is not None and (os.geteuid() != 0 or shutil.which("runuser"))
    # CI has the engine and the offline images (make test builds them): use the real image
    # there; on a laptop the local binaries start faster.
    if bin_dir is not None and local_ok and not os.environ.get("CI"):
        yield from _local_cluster(bin_dir)
        return
    yield request.getfixturevalue("offline_postgres")  # skips, or fails under CI, if absent


def _local_cluster(bin_dir: Path) -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="ktrdr-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = str(bin_dir / "pg_ctl")
    subprocess.run(
        _as_postgres(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres_admin_dsn: str) -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"ktrdr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    params = conninfo_to_dict(postgres_admin_dsn)
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def wait_until(predicate: Callable[[], object], *, timeout: float = 10.0) -> object:
    """Poll until predicate() is truthy; the value, or AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(0.05)


class RecordingWorker:
    """A stand-in worker: a real HTTP server that records the jobs POSTed to /jobs and answers
    with `status` (202 like a real worker, or an error to simulate a refusing one)."""

    def __init__(self, status: int = 202) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.jobs: list[dict[str, Any]] = []
        self.status = status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                recorder.jobs.append(json.loads(self.rfile.read(length)))
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording_worker() -> Iterator[RecordingWorker]:
    worker = RecordingWorker()
    yield worker
    worker.close()


@pytest.fixture
def migrated_database(database_url: str) -> str:
    from ktrdr.db.migrate import apply_migrations

    apply_migrations(database_url)
    return database_url


@pytest.fixture
def api(migrated_database: str) -> Iterator[Any]:
    """An HTTP client for the backend served by uvicorn on a fresh migrated database."""
    import httpx

    from ktrdr.api.app import create_app
    from ktrdr.api.settings import ApiSettings

    settings = ApiSettings(
        conninfo=migrated_database, instance_id="ktrdr--feat-a", dispatch_interval_s=0.2
    )
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@contextmanager
def serve(app: Any, *, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 (a free port by default); yields its URL."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

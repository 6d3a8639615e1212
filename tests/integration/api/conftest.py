"""A real PostgreSQL for the API tests, and a fresh database per test.

Where the server comes from, first match wins: KTRDR_TEST_DATABASE_URL (an admin DSN); the
Debian PostgreSQL binaries on this machine (a throwaway cluster, started once per session)
outside CI; otherwise the offline postgres Docker image (tests/support/engine.py), which
skips without an engine, or fails when CI is set. uvicorn and the stand-in worker are in
tests/support/api_server.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_server import RecordingWorker, free_port, serve

PG_BIN_DIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15)]


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

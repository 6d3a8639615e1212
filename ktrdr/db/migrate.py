"""A small versioned migration runner: ktrdr/db/migrations/NNNN_name.sql, applied in order,
each in its own transaction and recorded in schema_migrations, under an advisory lock so two
runners never apply the same file twice.

    python -m ktrdr.db.migrate        # the compose `migrate` service; waits for the database
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from importlib import resources

from ktrdr.errors import KtrdrError

# Any constant works; it only has to be the same for every runner.
_ADVISORY_LOCK_ID = 4_242_001


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)


def packaged_migrations() -> list[Migration]:
    folder = resources.files("ktrdr.db.migrations")
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda e: e.name,
    )
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def apply_migrations(conninfo: str, migrations: list[Migration] | None = None) -> MigrationReport:
    import psycopg

    migrations = packaged_migrations() if migrations is None else migrations
    report = MigrationReport()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
            done = {row[0] for row in rows}
            for migration in migrations:
                if migration.version in done:
                    report.already_applied.append(migration.version)
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
                    )
                report.applied.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_ID,))
    return report


# Long on purpose: the gate decides when a start failed; ten first starts at once on 2 cores
# take PostgreSQL over a minute. KTRDR_DB_WAIT_S overrides it.
DB_WAIT_S = 600.0


def wait_for_database(conninfo: str, *, timeout: float = DB_WAIT_S, interval: float = 0.25) -> None:
    """Every `interval` until PostgreSQL answers: the whole stack waits on the migrations, so a
    short one is up to 0.75 s sooner for every `up` (a refused connection costs next to nothing)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(conninfo) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as e:
            if time.monotonic() >= deadline:
                raise KtrdrError(
                    f"database not reachable after {timeout:g}s: {str(e).strip()}; "
                    "check the db service (`docker compose logs db`)"
                ) from e
            time.sleep(interval)


def main() -> int:
    import os

    from ktrdr.db.settings import conninfo_from_env

    conninfo = conninfo_from_env()
    try:
        wait_for_database(conninfo, timeout=float(os.environ.get("KTRDR_DB_WAIT_S") or DB_WAIT_S))
        report = apply_migrations(conninfo)
    except KtrdrError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    for version in report.applied:
        print(f"applied {version}")
    print(f"migrations: {len(report.applied)} applied, {len(report.already_applied)} already done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

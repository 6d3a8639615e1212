"""All SQL of the backend: workers, operations and dispatch claims, over a psycopg pool.

Worker liveness is derived on read: a worker whose last heartbeat is older than the timeout
is `unreachable`; the stored status is only idle/busy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ktrdr.api.freeze import FreezeWatch

_WORKER_COLUMNS = """
    worker_id, worker_type, endpoint, last_heartbeat,
    CASE WHEN last_heartbeat IS NULL
              OR last_heartbeat < now() - make_interval(secs => %(timeout)s)
         THEN 'unreachable' ELSE status END AS status
"""
_OPERATION_COLUMNS = (
    "operation_id, operation_type, status, created_at, started_at, finished_at, "
    "worker_id, params, result, error"
)


@dataclass(frozen=True)
class Assignment:
    """An operation claimed for a worker: marked running, to be handed over by HTTP."""

    operation_id: str
    operation_type: str
    params: dict[str, Any]
    worker_id: str
    endpoint: str


class UnknownOperationError(LookupError):
    pass


class OperationNotRunningError(RuntimeError):
    pass


class Store:
    def __init__(
        self, conninfo: str, *, heartbeat_timeout_s: float, freeze_threshold_s: float = 6.0
    ) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s
        # Every liveness read goes through it first (see ktrdr/api/freeze.py).
        self.freeze = FreezeWatch(self._credit_unobserved_time, threshold_s=freeze_threshold_s)
        self.pool = ConnectionPool(
            conninfo,
            # Autocommit: a single statement is its own transaction, without the BEGIN and
            # COMMIT round trips (a heartbeat is 2 round trips, not 4); several statements
            # that must hold together run in `conn.transaction()`.
            kwargs={"autocommit": True},
            min_size=1,
            max_size=4,
            open=False,
            timeout=3,
            check=ConnectionPool.check_connection,
            name="ktrdr",
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close(timeout=2)

    def _query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return _fetch(conn, sql, params)

    def ping(self) -> bool:
        try:
            with self.pool.connection(timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:  # any failure means "database: error" in /health
            return False

    # --- reference data -------------------------------------------------------------------

    def operation_types(self) -> dict[str, str]:
        rows = self._query("SELECT name, worker_type FROM operation_types")
        return {row["name"]: row["worker_type"] for row in rows}

    # --- workers --------------------------------------------------------------------------

    def register_worker(self, *, worker_id: str, worker_type: str, endpoint: str) -> None:
        """Upsert the worker as idle and alive; an operation it was running is lost with the
        restart, so fail it."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE operations SET status = 'failed', finished_at = now(),"
                " error = 'worker ' || worker_id || ' restarted before finishing'"
                " WHERE worker_id = %s AND status = 'running'",
                (worker_id,),
            )
            conn.execute(
                "INSERT INTO workers (worker_id, worker_type, endpoint, status, last_heartbeat)"
                " VALUES (%s, %s, %s, 'idle', now())"
                " ON CONFLICT (worker_id) DO UPDATE SET worker_type = excluded.worker_type,"
                " endpoint = excluded.endpoint, status = 'idle', current_operation_id = NULL,"
                " registered_at = now(), last_heartbeat = now()",
                (worker_id, worker_type, endpoint),
            )

    def heartbeat(self, worker_id: str) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE workers SET last_heartbeat = now() WHERE worker_id = %s", (worker_id,)
            )
            return cur.rowcount == 1

    def _credit_unobserved_time(self, gap_s: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE workers SET last_heartbeat ="
                " LEAST(now(), last_heartbeat + make_interval(secs => %s))"
                " WHERE last_heartbeat IS NOT NULL",
                (gap_s,),
            )

    def list_workers(self) -> list[dict[str, Any]]:
        self.freeze.check()
        return self._query(
            f"SELECT {_WORKER_COLUMNS} FROM workers ORDER BY worker_type, worker_id",
            {"timeout": self.heartbeat_timeout_s},
        )

    # --- operations -----------------------------------------------------------------------

    def create_operation(self, *, operation_type: str, params: dict[str, Any]) -> dict[str, Any]:
        rows = self._query(
            f"INSERT INTO operations (operation_id, operation_type, params)"
            f" VALUES (%(id)s, %(type)s, %(params)s) RETURNING {_OPERATION_COLUMNS}",
            {"id": f"op_{uuid.uuid4().hex[:16]}", "type": operation_type, "params": Jsonb(params)},
        )
        return rows[0]

    def get_operation(self, operation_id: str) -> dict[str, Any] | None:
        rows = self._query(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE operation_id = %(id)s",
            {"id": operation_id},
        )
        return rows[0] if rows else None

    def list_operations(self, *, status: str | None, limit: int) -> list[dict[str, Any]]:
        return self._query(
            f"SELECT {_OPERATION_COLUMNS} FROM operations"
            " WHERE %(status)s::text IS NULL OR status = %(status)s"
            " ORDER BY created_at DESC, operation_id LIMIT %(limit)s",
            {"status": status, "limit": limit},
        )

    def record_result(
        self,
        operation_id: str,
        *,
        worker_id: str,
        status: str,
        result: dict[str, Any] | None,
        error: str | None,
    ) -> dict[str, Any]:
        """Store a finished operation's outcome and free its worker."""
        with self.pool.connection() as conn, conn.transaction():
            rows = _fetch(
                conn,
                "SELECT status, worker_id FROM operations WHERE operation_id = %s FOR UPDATE",
                (operation_id,),
            )
            if not rows:
                raise UnknownOperationError(operation_id)
            row = rows[0]
            if row["status"] != "running" or row["worker_id"] != worker_id:
                raise OperationNotRunningError(
                    f"operation {operation_id} is {row['status']} on worker "
                    f"{row['worker_id']}, not running on {worker_id}"
                )
            conn.execute(
                "UPDATE operations SET status = %s, result = %s, error = %s, finished_at = now()"
                " WHERE operation_id = %s",
                (status, Jsonb(result) if result is not None else None, error, operation_id),
            )
            conn.execute(
                "UPDATE workers SET status = 'idle', current_operation_id = NULL,"
                " last_heartbeat = now() WHERE worker_id = %s AND current_operation_id = %s",
                (worker_id, operation_id),
            )
        found = self.get_operation(operation_id)
        assert found is not None  # just written in the same database
        return found

    # --- dispatch -------------------------------------------------------------------------

    def claim_assignments(self, *, limit: int = 20) -> list[Assignment]:
        """Pair pending operations (oldest first) with idle, live workers of the right type
        (least recently assigned first) and mark both as running/busy, atomically."""
        self.freeze.check()
        assignments: list[Assignment] = []
        with self.pool.connection() as conn, conn.transaction():
            pending = _fetch(
                conn,
                "SELECT o.operation_id, o.operation_type, o.params, t.worker_type"
                " FROM operations o JOIN operation_types t ON t.name = o.operation_type"
                " WHERE o.status = 'pending' ORDER BY o.created_at, o.operation_id"
                " LIMIT %s FOR UPDATE OF o SKIP LOCKED",
                (limit,),
            )
            for op in pending:
                workers = _fetch(
                    conn,
                    "SELECT worker_id, endpoint FROM workers"
                    " WHERE worker_type = %s AND status = 'idle'"
                    " AND last_heartbeat >= now() - make_interval(secs => %s)"
                    " ORDER BY last_assigned_at NULLS FIRST, worker_id"
                    " LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (op["worker_type"], self.heartbeat_timeout_s),
                )
                if not workers:
                    continue
                w, o = workers[0], op
                conn.execute(
                    "UPDATE operations SET status = 'running', worker_id = %s, started_at = now()"
                    " WHERE operation_id = %s",
                    (w["worker_id"], o["operation_id"]),
                )
                conn.execute(
                    "UPDATE workers SET status = 'busy', current_operation_id = %s,"
                    " last_assigned_at = now() WHERE worker_id = %s",
                    (o["operation_id"], w["worker_id"]),
                )
                assignments.append(
                    Assignment(
                        o["operation_id"],
                        o["operation_type"],
                        o["params"],
                        w["worker_id"],
                        w["endpoint"],
                    )
                )
        return assignments

    def release(self, assignment: Assignment) -> None:
        """Undo a claim whose hand-over failed: the operation waits again and the worker counts
        as unreachable until its next heartbeat."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE operations SET status = 'pending', worker_id = NULL, started_at = NULL"
                " WHERE operation_id = %s AND status = 'running'",
                (assignment.operation_id,),
            )
            conn.execute(
                "UPDATE workers SET status = 'idle', current_operation_id = NULL,"
                " last_heartbeat = NULL WHERE worker_id = %s",
                (assignment.worker_id,),
            )

    def fail_orphaned_operations(self) -> int:
        """Fail running operations whose worker stopped heartbeating; free those workers."""
        self.freeze.check()
        # One statement (so one transaction): runs every dispatch round, usually finding none.
        rows = self._query(
            "WITH lost AS ("
            " UPDATE operations o SET status = 'failed', finished_at = now(),"
            " error = 'worker ' || o.worker_id || ' stopped sending heartbeats'"
            " FROM workers w WHERE w.worker_id = o.worker_id AND o.status = 'running'"
            " AND w.current_operation_id = o.operation_id"
            " AND (w.last_heartbeat IS NULL"
            "      OR w.last_heartbeat < now() - make_interval(secs => %(timeout)s))"
            " RETURNING o.worker_id),"
            " freed AS (UPDATE workers SET status = 'idle', current_operation_id = NULL"
            " WHERE worker_id IN (SELECT worker_id FROM lost))"
            " SELECT count(*) AS n FROM lost",
            {"timeout": self.heartbeat_timeout_s},
        )
        return int(rows[0]["n"])

    def counts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(operations by type/status, workers by type/status) for /metrics."""
        self.freeze.check()
        operations = self._query(
            "SELECT operation_type, status, count(*) AS n FROM operations GROUP BY 1, 2"
        )
        workers = self._query(
            f"SELECT worker_type, status, count(*) AS n FROM (SELECT {_WORKER_COLUMNS}"
            " FROM workers) w GROUP BY 1, 2",
            {"timeout": self.heartbeat_timeout_s},
        )
        return operations, workers


def _fetch(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.encode(), params)
        return cur.fetchall() if cur.description else []


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None

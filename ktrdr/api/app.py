"""The backend: `uvicorn ktrdr.api.app:app`. v1 API under /api/v1, docs at /api/v1/docs,
Prometheus metrics at /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import psycopg
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field

import ktrdr
from ktrdr.api.dispatch import Dispatcher, PostJob, post_job_http
from ktrdr.api.observability import (
    instrument_http_metrics,
    metrics_response,
    setup_tracing,
    shutdown_tracing,
)
from ktrdr.api.settings import ApiSettings
from ktrdr.api.store import OperationNotRunningError, Store, UnknownOperationError

PREFIX = "/api/v1"
# A dispatcher round late by more than this means the backend did not run (frozen, stopped).
FREEZE_SLACK_S = 5.0
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
OperationStatus = Literal["pending", "running", "completed", "failed"]


class WorkerRegistration(BaseModel):
    worker_id: str = Field(pattern=NAME_PATTERN)
    worker_type: Literal["backtest", "training"]
    endpoint: str = Field(pattern=r"^https?://")


class OperationRequest(BaseModel):
    operation_type: str
    params: dict[str, Any] = Field(default_factory=dict)


class OperationOutcome(BaseModel):
    worker_id: str
    status: Literal["completed", "failed"]
    result: dict[str, Any] | None = None
    error: str | None = None


class _StateCollector:
    """Operations and workers by type and status, counted in the database at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            operations, workers = self.store.counts()
        except Exception:  # database down: export nothing rather than fail the scrape
            return
        ops = GaugeMetricFamily(
            "ktrdr_operations", "Operations by type and status", labels=["type", "status"]
        )
        for row in operations:
            ops.add_metric([row["operation_type"], row["status"]], row["n"])
        wrk = GaugeMetricFamily(
            "ktrdr_workers", "Registered workers by type and status", labels=["type", "status"]
        )
        for row in workers:
            wrk.add_metric([row["worker_type"], row["status"]], row["n"])
        yield ops
        yield wrk


def create_app(settings: ApiSettings | None = None, *, post_job: PostJob | None = None) -> FastAPI:
    settings = settings or ApiSettings.from_env()
    store = Store(
        settings.conninfo,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        # The dispatcher observes the store every round: a longer silence is a freeze.
        freeze_threshold_s=settings.dispatch_interval_s + FREEZE_SLACK_S,
    )
    dispatcher = Dispatcher(
        store,
        post_job or post_job_http(settings.dispatch_timeout_s),
        interval=settings.dispatch_interval_s,
    )
    tracer_provider: list[Any] = []
    app = FastAPI(
        title="KTRDR API",
        version=ktrdr.__version__,
        docs_url=f"{PREFIX}/docs",
        redoc_url=f"{PREFIX}/redoc",
        openapi_url=f"{PREFIX}/openapi.json",
        lifespan=_lifespan(store, dispatcher, tracer_provider),
    )
    app.state.store, app.state.dispatcher, app.state.settings = store, dispatcher, settings
    registry = CollectorRegistry()
    registry.register(_StateCollector(store))
    instrument_http_metrics(app, registry)
    tracer_provider.append(setup_tracing(app, service_name="ktrdr-backend"))
    _add_worker_routes(app, store, dispatcher, settings)
    _add_operation_routes(app, store, dispatcher)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return metrics_response(registry)

    return app


def _lifespan(
    store: Store, dispatcher: Dispatcher, tracer_provider: list[Any]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.open()
        store.freeze.restart()
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()
            store.close()
            shutdown_tracing(tracer_provider[0] if tracer_provider else None)

    return lifespan


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"detail": f"database unavailable ({type(exc).__name__}); check the db service"},
        status_code=503,
    )


def _add_worker_routes(
    app: FastAPI, store: Store, dispatcher: Dispatcher, settings: ApiSettings
) -> None:
    @app.get(f"{PREFIX}/health")
    def health() -> dict[str, Any]:
        database_ok = store.ping()
        return {
            "status": "ok" if database_ok else "degraded",
            "version": ktrdr.__version__,
            "database": "ok" if database_ok else "error",
            "instance_id": settings.instance_id,
        }

    @app.get(f"{PREFIX}/workers")
    def list_workers() -> list[dict[str, Any]]:
        return store.list_workers()

    @app.post(f"{PREFIX}/workers/register")
    def register_worker(body: WorkerRegistration) -> dict[str, Any]:
        store.register_worker(
            worker_id=body.worker_id, worker_type=body.worker_type, endpoint=body.endpoint
        )
        dispatcher.wake()
        return {"worker_id": body.worker_id, "registered": True}

    @app.post(f"{PREFIX}/workers/{{worker_id}}/heartbeat")
    def heartbeat(worker_id: str) -> dict[str, Any]:
        if not store.heartbeat(worker_id):
            raise HTTPException(404, f"worker {worker_id} is not registered; register again")
        return {"worker_id": worker_id, "ok": True}


def _add_operation_routes(app: FastAPI, store: Store, dispatcher: Dispatcher) -> None:
    @app.get(f"{PREFIX}/operations")
    def list_operations(
        status: OperationStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return store.list_operations(status=status, limit=max(1, min(limit, 1000)))

    @app.get(f"{PREFIX}/operations/{{operation_id}}")
    def get_operation(operation_id: str) -> dict[str, Any]:
        operation = store.get_operation(operation_id)
        if operation is None:
            raise HTTPException(404, f"operation {operation_id} not found")
        return operation

    @app.post(f"{PREFIX}/operations", status_code=201)
    def create_operation(body: OperationRequest) -> dict[str, Any]:
        known = store.operation_types()
        if body.operation_type not in known:
            raise HTTPException(
                422,
                f"unknown operation_type {body.operation_type!r}; "
                f"expected one of: {', '.join(sorted(known))}",
            )
        operation = store.create_operation(operation_type=body.operation_type, params=body.params)
        dispatcher.wake()
        return operation

    @app.post(f"{PREFIX}/operations/{{operation_id}}/result")
    def report_result(operation_id: str, body: OperationOutcome) -> dict[str, Any]:
        try:
            operation = store.record_result(
                operation_id,
                worker_id=body.worker_id,
                status=body.status,
                result=body.result,
                error=body.error,
            )
        except UnknownOperationError:
            raise HTTPException(404, f"operation {operation_id} not found") from None
        except OperationNotRunningError as e:
            raise HTTPException(409, str(e)) from None
        dispatcher.wake()
        return operation


app = create_app()

"""The worker HTTP server (port 8080): GET /health, POST /jobs, GET /metrics.

A job is accepted with 202 and run on a background thread, one at a time; its outcome goes to
the backend at POST /api/v1/operations/{id}/result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, Field

import ktrdr
from ktrdr.api.observability import (
    instrument_http_metrics,
    metrics_response,
    setup_tracing,
    shutdown_tracing,
)
from ktrdr.workers import jobs
from ktrdr.workers.agent import BackendLink
from ktrdr.workers.data import JobError
from ktrdr.workers.settings import WorkerSettings

log = logging.getLogger("ktrdr.workers")


class Job(BaseModel):
    operation_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    operation_type: str
    params: dict[str, Any] = Field(default_factory=dict)


def run_job(job: Job, settings: WorkerSettings) -> dict[str, Any]:
    """The outcome to report for a job: completed with a result, or failed with an error."""
    outcome: dict[str, Any] = {"worker_id": settings.worker_id}
    try:
        result = jobs.execute(
            job.operation_type,
            job.params,
            shared_root=settings.shared_root,
            operation_id=job.operation_id,
        )
    except JobError as e:
        return {**outcome, "status": "failed", "error": str(e)}
    except Exception as e:  # a bug: still report it, so the operation does not hang
        log.exception("job %s crashed", job.operation_id)
        return {**outcome, "status": "failed", "error": f"internal error: {type(e).__name__}: {e}"}
    return {**outcome, "status": "completed", "result": result}


def create_app(settings: WorkerSettings | None = None, *, register: bool = True) -> FastAPI:
    settings = settings or WorkerSettings.from_env()
    link = BackendLink(settings)
    provider: list[Any] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if register:
            link.start()
        try:
            yield
        finally:
            link.stop()
            shutdown_tracing(provider[0] if provider else None)

    app = FastAPI(title=f"KTRDR {settings.worker_type} worker", lifespan=lifespan)
    registry = CollectorRegistry()
    instrument_http_metrics(app, registry)
    provider.append(setup_tracing(app, service_name=f"ktrdr-{settings.worker_type}-worker"))
    _add_job_routes(app, settings, link, _JobMetrics(registry))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return metrics_response(registry)

    app.state.settings, app.state.link = settings, link
    return app


class _JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.done = Counter(
            "ktrdr_worker_jobs_total", "Jobs run", ["type", "status"], registry=registry
        )
        self.duration = Histogram(
            "ktrdr_worker_job_duration_seconds", "Job run time", ["type"], registry=registry
        )


def _add_job_routes(
    app: FastAPI, settings: WorkerSettings, link: BackendLink, job_metrics: _JobMetrics
) -> None:
    busy = threading.Lock()  # one job at a time

    def work(job: Job) -> None:
        try:
            started = time.perf_counter()
            outcome = run_job(job, settings)
            job_metrics.duration.labels(job.operation_type).observe(time.perf_counter() - started)
            job_metrics.done.labels(job.operation_type, outcome["status"]).inc()
            link.report(job.operation_id, outcome)
        finally:
            busy.release()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "worker_id": settings.worker_id,
            "worker_type": settings.worker_type,
            "busy": busy.locked(),
            "registered": link.registered.is_set(),
            "version": ktrdr.__version__,
        }

    @app.post("/jobs", status_code=202)
    def accept_job(job: Job) -> dict[str, Any]:
        if job.operation_type != settings.worker_type:
            raise HTTPException(
                400, f"this is a {settings.worker_type} worker; cannot run {job.operation_type}"
            )
        if not busy.acquire(blocking=False):
            raise HTTPException(409, f"worker {settings.worker_id} is busy")
        threading.Thread(target=work, args=(job,), name=f"job-{job.operation_id}").start()
        return {"operation_id": job.operation_id, "accepted": True}

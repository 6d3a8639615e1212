"""The worker HTTP server (port 8080): GET /health, POST /jobs, GET /metrics.

A job is accepted with 202 and run on a background thread, one at a time; its outcome goes to
the backend at POST /api/v1/operations/{id}/result.

Plain Starlette, not FastAPI: three routes need neither its validation nor its OpenAPI models,
and importing them was ~12 MiB of an idle worker's ~50 (the backend keeps FastAPI).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
OPERATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class InvalidJob(ValueError):
    """A POST /jobs body that is not a job (answered 422, like FastAPI's validation)."""


@dataclass(frozen=True)
class Job:
    operation_id: str
    operation_type: str
    params: dict[str, Any]

    @classmethod
    def from_json(cls, body: Any) -> Job:
        if not isinstance(body, dict):
            raise InvalidJob("the body must be a JSON object")
        operation_id, operation_type = body.get("operation_id"), body.get("operation_type")
        params = body.get("params", {})
        if not isinstance(operation_id, str) or not OPERATION_ID.match(operation_id):
            raise InvalidJob(f"operation_id must match {OPERATION_ID.pattern}")
        if not isinstance(operation_type, str):
            raise InvalidJob("operation_type must be a string")
        if not isinstance(params, dict):
            raise InvalidJob("params must be a JSON object")
        return cls(operation_id, operation_type, params)


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


def create_app(settings: WorkerSettings | None = None, *, register: bool = True) -> Starlette:
    settings = settings or WorkerSettings.from_env()
    link = BackendLink(settings)
    provider: list[Any] = []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if register:
            link.start()
        try:
            yield
        finally:
            link.stop()
            shutdown_tracing(provider[0] if provider else None)

    registry = CollectorRegistry()
    routes = _JobRoutes(settings, link, _JobMetrics(registry))

    async def metrics(_: Request) -> Response:
        return metrics_response(registry)

    app = Starlette(
        routes=[
            Route("/health", routes.health, methods=["GET"]),
            Route("/jobs", routes.accept_job, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    instrument_http_metrics(app, registry)
    provider.append(setup_tracing(app, service_name=f"ktrdr-{settings.worker_type}-worker"))
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


class _JobRoutes:
    def __init__(self, settings: WorkerSettings, link: BackendLink, metrics: _JobMetrics) -> None:
        self.settings, self.link, self.metrics = settings, link, metrics
        self.busy = threading.Lock()  # one job at a time

    async def health(self, _: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "worker_id": self.settings.worker_id,
                "worker_type": self.settings.worker_type,
                "busy": self.busy.locked(),
                "registered": self.link.registered.is_set(),
                "version": ktrdr.__version__,
            }
        )

    async def accept_job(self, request: Request) -> Response:
        try:
            job = Job.from_json(json.loads(await request.body()))
        except (ValueError, UnicodeDecodeError) as e:  # InvalidJob, or not JSON at all
            return _error(422, f"not a job: {e}")
        if job.operation_type != self.settings.worker_type:
            return _error(
                400,
                f"this is a {self.settings.worker_type} worker; cannot run {job.operation_type}",
            )
        if not self.busy.acquire(blocking=False):
            return _error(409, f"worker {self.settings.worker_id} is busy")
        threading.Thread(target=self._work, args=(job,), name=f"job-{job.operation_id}").start()
        return JSONResponse({"operation_id": job.operation_id, "accepted": True}, status_code=202)

    def _work(self, job: Job) -> None:
        try:
            started = time.perf_counter()
            outcome = run_job(job, self.settings)
            elapsed = time.perf_counter() - started
            self.metrics.duration.labels(job.operation_type).observe(elapsed)
            self.metrics.done.labels(job.operation_type, outcome["status"]).inc()
            self.link.report(job.operation_id, outcome)
        finally:
            self.busy.release()


def _error(status: int, detail: str) -> Response:
    """FastAPI's error shape, so clients read `detail` from any KTRDR server."""
    return JSONResponse({"detail": detail}, status_code=status)

"""Dispatch: hand pending operations to idle workers over HTTP (worker endpoint POST /jobs).

A background thread runs a round every `interval` seconds, and at once when woken (a new
operation, a finished one). A hand-over that fails is undone: the operation waits for the
next round and the worker counts as unreachable until it heartbeats again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ktrdr.api.store import Assignment, Store

log = logging.getLogger("ktrdr.api.dispatch")

PostJob = Callable[[str, dict[str, Any]], None]


def post_job_http(timeout: float) -> PostJob:
    def post(url: str, payload: dict[str, Any]) -> None:
        import httpx
        from opentelemetry import propagate

        headers: dict[str, str] = {}
        propagate.inject(headers)
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
        response.raise_for_status()

    return post


def dispatch_round(store: Store, post_job: PostJob) -> list[Assignment]:
    """One round: fail operations of dead workers, then hand over what can be handed over.
    Returns the assignments that reached their worker."""
    from opentelemetry import trace

    store.fail_orphaned_operations()
    delivered = []
    tracer = trace.get_tracer("ktrdr.api.dispatch")
    for assignment in store.claim_assignments():
        payload = {
            "operation_id": assignment.operation_id,
            "operation_type": assignment.operation_type,
            "params": assignment.params,
        }
        with tracer.start_as_current_span(f"dispatch {assignment.operation_type}") as span:
            span.set_attribute("ktrdr.operation_id", assignment.operation_id)
            span.set_attribute("ktrdr.worker_id", assignment.worker_id)
            try:
                post_job(f"{assignment.endpoint.rstrip('/')}/jobs", payload)
            except Exception as e:  # any hand-over failure: retry the operation elsewhere
                log.warning(
                    "handing %s to %s failed: %s", assignment.operation_id, assignment.worker_id, e
                )
                store.release(assignment)
                continue
        delivered.append(assignment)
    return delivered


class Dispatcher:
    def __init__(self, store: Store, post_job: PostJob, *, interval: float) -> None:
        self._store, self._post_job, self._interval = store, post_job, interval
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="ktrdr-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                dispatch_round(self._store, self._post_job)
            except Exception:  # the database may be down; the next round retries
                log.exception("dispatch round failed")

"""The worker's link to the backend: register (retrying until the backend answers), then
heartbeat; a heartbeat answered 404 means the backend forgot us, so register again."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ktrdr.workers.settings import WorkerSettings

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("ktrdr.workers.agent")


class BackendLink:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.registered = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ktrdr-heartbeat", daemon=True)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> int:
        url = f"{self.settings.api_url}/api/v1{path}"
        return self._http().post(url, json=payload, timeout=5).status_code

    def _http(self) -> httpx.Client:
        """One client for the worker's life: a new one per heartbeat builds a TLS context
        each time, which was most of an idle worker's CPU."""
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client()
            return self._client

    def register_once(self) -> bool:
        s = self.settings
        payload = {"worker_id": s.worker_id, "worker_type": s.worker_type, "endpoint": s.endpoint}
        try:
            ok = self._post("/workers/register", payload) == 200
        except Exception as e:  # backend not up yet: retry
            log.info("registration with %s failed (%s); retrying", s.api_url, e)
            return False
        if ok:
            self.registered.set()
        return ok

    def heartbeat_once(self) -> bool:
        try:
            status = self._post(f"/workers/{self.settings.worker_id}/heartbeat")
        except Exception as e:  # backend restarting: keep trying
            log.info("heartbeat failed: %s", e)
            return False
        if status == 404:
            self.registered.clear()
            return self.register_once()
        return status == 200

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.registered.is_set() and not self.register_once():
                self._stop.wait(self.settings.register_retry_s)
                continue
            self._stop.wait(self.settings.heartbeat_interval_s)
            if not self._stop.is_set():
                self.heartbeat_once()

    def report(self, operation_id: str, outcome: dict[str, Any]) -> None:
        """Send a job's outcome to the backend, retrying briefly across a backend restart."""
        for _ in range(10):
            try:
                status = self._post(f"/operations/{operation_id}/result", outcome)
            except Exception as e:  # backend restarting (hot reload): retry
                log.warning("reporting %s failed: %s", operation_id, e)
                self._stop.wait(1)
                continue
            if status >= 500:
                self._stop.wait(1)
                continue
            if status != 200:
                log.warning("backend refused the result of %s: HTTP %s", operation_id, status)
            return

"""The worker's link to the backend: register (retrying until the backend answers), then
heartbeat; a heartbeat answered 404 means the backend forgot us, so register again."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.parse
from typing import Any

from ktrdr.workers.settings import WorkerSettings

log = logging.getLogger("ktrdr.workers.agent")
REQUEST_TIMEOUT_S = 5.0
FIRST_REGISTER_RETRY_S = 0.2  # doubled per failed attempt up to WorkerSettings.register_retry_s
# A kept-alive connection the server has closed meanwhile fails like this on reuse.
_STALE = (ConnectionResetError, BrokenPipeError)  # RemoteDisconnected is a ConnectionResetError
_HEADERS = {"Content-Type": "application/json"}


class JsonPoster:
    """POSTs JSON to one server over one kept-alive connection, one request at a time.

    The standard library's http.client, not httpx: this is the worker's only HTTP client, and
    httpx (and the TLS context a Client builds) was ~6 MiB of an idle worker's ~50. One
    connection for the worker's life: a new one per heartbeat was most of its idle CPU."""

    def __init__(self, base_url: str, *, timeout: float = REQUEST_TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(self, path: str, payload: dict[str, Any] | None = None) -> int:
        """The response's status code; OSError/HTTPException when there is no answer."""
        body = b"" if payload is None else json.dumps(payload).encode()
        with self._lock:
            if self._conn is not None:
                try:
                    return self._send(path, body)
                except _STALE:  # the server closed the idle connection: once more, anew
                    pass
            return self._send(path, body)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _send(self, path: str, body: bytes) -> int:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self._timeout)
        try:
            self._conn.request("POST", self._prefix + path, body=body, headers=_HEADERS)
            response = self._conn.getresponse()
            response.read()
        except BaseException:
            self._close()
            raise
        if response.will_close:
            self._close()
        return response.status

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class BackendLink:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.registered = threading.Event()
        self.stop_requested = threading.Event()
        self._thread = threading.Thread(
            target=self.run_until_stopped, name="ktrdr-heartbeat", daemon=True
        )
        self._backend = JsonPoster(f"{settings.api_url}/api/v1")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_requested.set()
        self._thread.join(timeout=5)
        self._backend.close()

    def _post(self, path: str, payload: dict[str, Any] | None = None) -> int:
        return self._backend.post(path, payload)

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

    def run_until_stopped(self) -> None:
        retry = FIRST_REGISTER_RETRY_S
        while not self.stop_requested.is_set():
            if not self.registered.is_set() and not self.register_once():
                # The backend usually answers a moment after the workers start: look again
                # soon (the gate waits for the registrations), then back off.
                self.stop_requested.wait(retry)
                retry = min(retry * 2, self.settings.register_retry_s)
                continue
            retry = FIRST_REGISTER_RETRY_S
            self.stop_requested.wait(self.settings.heartbeat_interval_s)
            if not self.stop_requested.is_set():
                self.heartbeat_once()

    def report(self, operation_id: str, outcome: dict[str, Any]) -> None:
        """Send a job's outcome to the backend, retrying briefly across a backend restart."""
        for _ in range(10):
            try:
                status = self._post(f"/operations/{operation_id}/result", outcome)
            except Exception as e:  # backend restarting (hot reload): retry
                log.warning("reporting %s failed: %s", operation_id, e)
                self.stop_requested.wait(1)
                continue
            if status >= 500:
                self.stop_requested.wait(1)
                continue
            if status != 200:
                log.warning("backend refused the result of %s: HTTP %s", operation_id, status)
            return

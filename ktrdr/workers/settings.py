"""Worker settings, read once from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ktrdr.errors import KtrdrError
from ktrdr.workers import WORKER_TYPES

WORKER_PORT = 8080


@dataclass(frozen=True)
class WorkerSettings:
    worker_type: str
    worker_id: str
    endpoint: str
    api_url: str
    shared_root: Path
    heartbeat_interval_s: float = 5.0
    register_retry_s: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if env is None else env
        worker_type = env.get("KTRDR_WORKER_TYPE", "")
        if worker_type not in WORKER_TYPES:
            raise KtrdrError(
                f"KTRDR_WORKER_TYPE={worker_type!r}: expected one of {', '.join(WORKER_TYPES)}"
            )
        host = socket.gethostname()
        return cls(
            worker_type=worker_type,
            worker_id=env.get("KTRDR_WORKER_ID") or f"{worker_type}-{host}",
            endpoint=env.get("KTRDR_WORKER_ENDPOINT") or f"http://{host}:{WORKER_PORT}",
            api_url=env.get("KTRDR_API_URL", "http://backend:8000").rstrip("/"),
            shared_root=Path(env.get("KTRDR_SHARED_DIR", "/shared")),
            heartbeat_interval_s=float(env.get("KTRDR_HEARTBEAT_INTERVAL_S", "5")),
        )

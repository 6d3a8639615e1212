"""Backend settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ktrdr.errors import KtrdrError


@dataclass(frozen=True)
class ApiSettings:
    conninfo: str
    instance_id: str | None = None
    heartbeat_timeout_s: float = 15.0
    # Dispatch is woken by every new operation and result; the periodic round only fails
    # operations of dead workers and retries refused hand-overs, so it need not be frequent
    # (each round is two transactions: most of an idle backend's CPU at 1 s).
    dispatch_interval_s: float = 5.0
    dispatch_timeout_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        from ktrdr.db.settings import conninfo_from_env

        env = os.environ if env is None else env
        return cls(
            conninfo=conninfo_from_env(env),
            instance_id=env.get("KTRDR_INSTANCE_ID") or None,
            heartbeat_timeout_s=_seconds(env, "KTRDR_HEARTBEAT_TIMEOUT_S", 15.0),
            dispatch_interval_s=_seconds(env, "KTRDR_DISPATCH_INTERVAL_S", 5.0),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise KtrdrError(f"{name}={raw!r} is not a positive number of seconds")
    return value

"""Calls on the v1 API that more than one API test module makes."""

from __future__ import annotations

from typing import Any

from httpx import Client

V1 = "/api/v1"


def register(api: Client, worker_id: str, endpoint: str, worker_type: str = "backtest") -> None:
    response = api.post(
        f"{V1}/workers/register",
        json={"worker_id": worker_id, "worker_type": worker_type, "endpoint": endpoint},
    )
    assert response.status_code == 200, response.text


def workers_by_id(api: Client) -> dict[str, dict[str, Any]]:
    return {w["worker_id"]: w for w in api.get(f"{V1}/workers").json()}

"""Operations on the instance's API as the E2E tests start and await them (inside the compose
network; this module is imported there, so it needs only httpx and pytest)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

OPERATION_TIMEOUT_S = 90.0


def wait_for_operation(api: httpx.Client, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + OPERATION_TIMEOUT_S
    while True:
        response = api.get(f"/operations/{operation_id}")
        response.raise_for_status()
        operation: dict[str, Any] = response.json()
        if operation["status"] in {"completed", "failed"}:
            return operation
        if time.monotonic() > deadline:
            pytest.fail(
                f"operation {operation_id} still {operation['status']} after "
                f"{OPERATION_TIMEOUT_S:g}s: {operation}"
            )
        time.sleep(0.25)


def start_operation(api: httpx.Client, operation_type: str, params: dict[str, Any]) -> str:
    response = api.post("/operations", json={"operation_type": operation_type, "params": params})
    assert response.status_code == 201, response.text
    return str(response.json()["operation_id"])

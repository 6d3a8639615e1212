"""Operations through the API (start, wait, failure), shared by `ktrdr operations` and MCP."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ktrdr.cli.api_client import ApiClient
from ktrdr.errors import KtrdrError

OPERATION_TYPES = ("backtest", "training")
TERMINAL_STATUSES = ("completed", "failed")
POLL_SECONDS = 0.5


def start_operation(
    client: ApiClient,
    operation_type: str,
    *,
    symbol: str,
    timeframe: str = "1d",
    strategy: str | None = None,
    wait: bool = False,
    timeout: float = 300.0,
    on_wait: Callable[[dict[str, Any]], None] = lambda operation: None,
) -> dict[str, Any]:
    """Submit an operation; with `wait`, poll until it completes or fails (`on_wait` sees each
    poll's state). A failed operation is returned, not raised: see `failure`."""
    if operation_type not in OPERATION_TYPES:
        raise KtrdrError(
            f"unknown operation type {operation_type!r}: expected {' or '.join(OPERATION_TYPES)}"
        )
    params: dict[str, Any] = {"symbol": symbol, "timeframe": timeframe}
    if strategy:
        params["strategy"] = strategy
    operation = client.start_operation(operation_type, params)
    if wait:
        operation = wait_for(client, operation, timeout=timeout, on_wait=on_wait)
    return operation


def wait_for(
    client: ApiClient,
    operation: dict[str, Any],
    *,
    timeout: float,
    on_wait: Callable[[dict[str, Any]], None] = lambda operation: None,
) -> dict[str, Any]:
    operation_id = operation["operation_id"]
    deadline = time.monotonic() + timeout
    while operation.get("status") not in TERMINAL_STATUSES:
        on_wait(operation)
        if time.monotonic() > deadline:
            raise KtrdrError(
                f"operation {operation_id} still {operation.get('status')} after {timeout:g}s; "
                f"check it later with `ktrdr operations show {operation_id}`"
            )
        time.sleep(POLL_SECONDS)
        operation = client.operation(operation_id)
    return operation


def failure(operation: dict[str, Any]) -> KtrdrError | None:
    """The error a failed operation ends the command with (after it was shown)."""
    if operation.get("status") != "failed":
        return None
    operation_id, reason = operation.get("operation_id"), operation.get("error")
    return KtrdrError(
        f"operation {operation_id} failed: {reason or 'no reason given'}; "
        f"details: `ktrdr operations show {operation_id}`"
    )

"""Run one job by operation type; every expected failure becomes a JobError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ktrdr.workers.backtest import run_backtest
from ktrdr.workers.data import JobError
from ktrdr.workers.training import run_training

JOB_TYPES = ("backtest", "training")


def execute(
    operation_type: str, params: dict[str, Any], *, shared_root: Path, operation_id: str
) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise JobError("params must be a JSON object")
    if not params.get("symbol"):
        raise JobError(f"{operation_type} needs params.symbol, e.g. AAPL")
    if operation_type == "backtest":
        return run_backtest(params, shared_root=shared_root).to_dict()
    if operation_type == "training":
        return run_training(params, shared_root=shared_root, operation_id=operation_id).to_dict()
    raise JobError(f"unknown operation type {operation_type!r}; expected one of {JOB_TYPES}")

"""Training: a least-squares linear model predicting the next bar's return from lagged returns.

Features for bar t are the returns r[t-1] .. r[t-lags] (r[t] = close[t] / close[t-1] - 1), the
target is r[t]; an intercept is fitted too. Solved exactly from the normal equations in pure
Python (the systems are tiny: lags + 1 unknowns). The model is written as JSON to
{shared}/models/{symbol}_{timeframe}_{operation_id}.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from ktrdr.workers.data import JobError, load_bars, ohlcv_path, safe_name

MAX_LAGS = 20


@dataclass(frozen=True)
class TrainingResult:
    symbol: str
    timeframe: str
    lags: int
    samples: int
    intercept: float
    coefficients: list[float]
    r_squared: float
    directional_accuracy: float
    model_path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def returns(closes: list[float]) -> list[float]:
    return [later / earlier - 1 for earlier, later in pairwise(closes)]


def lagged_dataset(series: list[float], lags: int) -> tuple[list[list[float]], list[float]]:
    """Rows [1, x[t-1], .., x[t-lags]] and targets x[t] for every t with a full history."""
    rows = [[1.0, *(series[t - k] for k in range(1, lags + 1))] for t in range(lags, len(series))]
    return rows, series[lags:]


def least_squares(rows: list[list[float]], targets: list[float]) -> list[float]:
    """Weights w minimising |rows·w - targets|², via the normal equations and Gaussian
    elimination with partial pivoting."""
    n = len(rows[0])
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    aty = [sum(r[i] * y for r, y in zip(rows, targets, strict=True)) for i in range(n)]
    matrix = [[*ata[i], aty[i]] for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(matrix[r][col]))
        if abs(matrix[pivot][col]) < 1e-12:
            raise JobError("cannot fit the model: the lagged returns are collinear (flat data?)")
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        for r in range(n):
            if r != col:
                factor = matrix[r][col] / matrix[col][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[col], strict=True)]
    return [matrix[i][n] / matrix[i][i] for i in range(n)]


def r_squared(predicted: list[float], actual: list[float]) -> float:
    mean = sum(actual) / len(actual)
    total = sum((y - mean) ** 2 for y in actual)
    residual = sum((y - p) ** 2 for y, p in zip(actual, predicted, strict=True))
    return 1 - residual / total if total else 0.0


def run_training(params: dict[str, Any], *, shared_root: Path, operation_id: str) -> TrainingResult:
    symbol = safe_name(params.get("symbol"), what="symbol")
    timeframe = safe_name(params.get("timeframe", "1d"), what="timeframe")
    lags = params.get("lags", 3)
    if isinstance(lags, bool) or not isinstance(lags, int) or not 1 <= lags <= MAX_LAGS:
        raise JobError(f"invalid lags {lags!r}: must be an integer from 1 to {MAX_LAGS}")
    bars = load_bars(ohlcv_path(shared_root, symbol, timeframe))
    series = returns([bar.close for bar in bars])
    if len(series) < 2 * (lags + 1):
        raise JobError(f"{symbol} {timeframe} has {len(bars)} bars; too few for {lags} lags")
    rows, targets = lagged_dataset(series, lags)
    weights = least_squares(rows, targets)
    predicted = [sum(w * x for w, x in zip(weights, row, strict=True)) for row in rows]
    hits = sum((p > 0) == (y > 0) for p, y in zip(predicted, targets, strict=True))
    path = model_path(shared_root, symbol, timeframe, operation_id)
    result = TrainingResult(
        symbol=symbol,
        timeframe=timeframe,
        lags=lags,
        samples=len(rows),
        intercept=weights[0],
        coefficients=weights[1:],
        r_squared=r_squared(predicted, targets),
        directional_accuracy=hits / len(rows),
        model_path=str(path),
    )
    _write_json(
        path,
        {
            "model": "linear_lagged_returns",
            "trained_on": [bars[0].date, bars[-1].date],
            **result.to_dict(),
        },
    )
    return result


def model_path(shared_root: Path, symbol: str, timeframe: str, operation_id: str) -> Path:
    name = f"{safe_name(symbol, what='symbol')}_{safe_name(timeframe, what='timeframe')}"
    return shared_root / "models" / f"{name}_{safe_name(operation_id, what='operation id')}.json"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise JobError(f"cannot write the model to {path}: {e.strerror or e}") from e

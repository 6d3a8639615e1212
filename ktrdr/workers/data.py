"""Loading the shared data a job names: OHLCV CSV files and strategy configs."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from ktrdr.errors import KtrdrError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
CSV_HEADER = ["date", "open", "high", "low", "close", "volume"]


class JobError(KtrdrError):
    """A job that cannot run as asked (missing data, bad parameters); reported as `failed`."""


@dataclass(frozen=True)
class Bar:
    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float


def safe_name(value: Any, *, what: str) -> str:
    """A symbol/timeframe/strategy name usable in a file name (no paths, no traversal)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise JobError(f"invalid {what} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def ohlcv_path(shared_root: Path, symbol: str, timeframe: str) -> Path:
    symbol = safe_name(symbol, what="symbol")
    timeframe = safe_name(timeframe, what="timeframe")
    return shared_root / "data" / f"{symbol}_{timeframe}.csv"


def load_bars(path: Path) -> list[Bar]:
    """Read an OHLCV CSV (header date,open,high,low,close,volume; dates ascending)."""
    if not path.is_file():
        raise JobError(
            f"no data for this symbol/timeframe: {path} does not exist; "
            "install the sample data with `ktrdr sandbox init-shared` or add the CSV"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [column.strip().lower() for column in next(reader, [])]
        if header != CSV_HEADER:
            raise JobError(f"{path}: header must be {','.join(CSV_HEADER)}, got {','.join(header)}")
        bars: list[Bar] = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                bars.append(Bar(row[0], *(float(cell) for cell in row[1:6])))
            except (ValueError, TypeError, IndexError) as e:
                raise JobError(f"{path}:{line_no}: not a valid OHLCV row: {row}") from e
    if any(later.date <= earlier.date for earlier, later in pairwise(bars)):
        raise JobError(f"{path}: dates must be strictly ascending")
    return bars


def load_strategy(shared_root: Path, name: str) -> dict[str, Any]:
    import yaml

    path = shared_root / "strategies" / f"{safe_name(name, what='strategy')}.yaml"
    if not path.is_file():
        raise JobError(f"unknown strategy {name!r}: {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise JobError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(config, dict):
        raise JobError(f"{path} must hold a mapping of strategy settings")
    return config

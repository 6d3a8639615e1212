from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

STRATEGY = """name: ma_crossover
type: ma_crossover
fast_window: 2
slow_window: 3
initial_capital: 10000
"""


def write_csv(path: Path, closes: list[float], *, start_day: int = 1) -> Path:
    """A daily OHLCV file whose open/high/low equal the close (only closes matter here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["date,open,high,low,close,volume"]
    for day, close in enumerate(closes, start=start_day):
        lines.append(f"2024-01-{day:02d},{close!r},{close!r},{close!r},{close!r},1000")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    (root / "strategies").mkdir(parents=True)
    (root / "strategies" / "ma_crossover.yaml").write_text(STRATEGY, encoding="utf-8")
    (root / "models").mkdir()
    return root


@pytest.fixture
def csv_writer(shared: Path) -> Callable[..., Path]:
    def write(symbol: str, closes: list[float]) -> Path:
        return write_csv(shared / "data" / f"{symbol}_1d.csv", closes)

    return write

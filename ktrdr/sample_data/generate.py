"""Regenerate the packaged sample OHLCV files (deterministic; run once, output is committed).

    python -m ktrdr.sample_data.generate

A seeded random walk per symbol over business days, so every instance and test sees the same
numbers. Prices are rounded to the instrument's tick (2 decimals for stocks, 5 for FX).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
START = date(2024, 1, 2)
ROWS = 250


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    seed: int
    start_price: float
    daily_vol: float
    drift: float
    decimals: int
    base_volume: int


SYMBOLS = (
    SymbolSpec("AAPL", 11, 185.0, 0.015, 0.0004, 2, 50_000_000),
    SymbolSpec("MSFT", 23, 370.0, 0.014, 0.0005, 2, 22_000_000),
    SymbolSpec("EURUSD", 37, 1.1000, 0.004, 0.0, 5, 100_000),
)


def business_days(start: date, count: int) -> list[date]:
    days: list[date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def generate_rows(spec: SymbolSpec, rows: int = ROWS) -> list[str]:
    rng = random.Random(spec.seed)
    close = spec.start_price
    lines = ["date,open,high,low,close,volume"]
    for day in business_days(START, rows):
        open_ = close * (1 + rng.gauss(0, spec.daily_vol / 4))
        close = open_ * (1 + spec.drift + rng.gauss(0, spec.daily_vol))
        high = max(open_, close) * (1 + abs(rng.gauss(0, spec.daily_vol / 3)))
        low = min(open_, close) * (1 - abs(rng.gauss(0, spec.daily_vol / 3)))
        volume = int(spec.base_volume * (0.6 + 0.8 * rng.random()))
        d = spec.decimals
        lines.append(
            f"{day.isoformat()},{open_:.{d}f},{high:.{d}f},{low:.{d}f},{close:.{d}f},{volume}"
        )
    return lines


def main() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for spec in SYMBOLS:
        path = DATA_DIR / f"{spec.symbol}_1d.csv"
        path.write_text("\n".join(generate_rows(spec)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

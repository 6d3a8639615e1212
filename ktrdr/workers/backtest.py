"""Backtest: a deterministic moving-average crossover, long-only, all-in, no costs.

On each bar's close: enter long when the fast SMA crosses above the slow SMA (fast > slow now,
fast <= slow on the previous bar), exit when it crosses below. A position still open at the end
is closed at the last close. Equity is marked to the close of every bar; max drawdown is the
largest peak-to-trough fall of that curve, as a fraction of the peak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ktrdr.workers.data import Bar, JobError, load_bars, load_strategy, ohlcv_path, safe_name


@dataclass(frozen=True)
class Trade:
    entry_date: str
    entry_price: float
    exit_date: str
    exit_price: float
    return_pct: float


@dataclass(frozen=True)
class BacktestResult:
    symbol: str
    timeframe: str
    strategy: str
    fast_window: int
    slow_window: int
    bars: int
    initial_capital: float
    final_equity: float
    total_return: float
    max_drawdown: float
    num_trades: int
    trades: list[Trade]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sma(values: list[float], window: int) -> list[float | None]:
    """Simple moving average; None until `window` values are available."""
    out: list[float | None] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / window if i >= window - 1 else None)
    return out


def ma_crossover(
    bars: list[Bar], *, fast_window: int, slow_window: int, initial_capital: float
) -> tuple[list[Trade], list[float]]:
    """The trades and the per-bar equity curve of the crossover strategy."""
    closes = [bar.close for bar in bars]
    fast, slow = sma(closes, fast_window), sma(closes, slow_window)
    cash, shares = initial_capital, 0.0
    entry: Bar | None = None
    trades: list[Trade] = []
    equity: list[float] = []
    for i, bar in enumerate(bars):
        signal = _cross(fast, slow, i)
        if signal == "up" and entry is None:
            shares, cash, entry = cash / bar.close, 0.0, bar
        elif signal == "down" and entry is not None:
            cash, shares = shares * bar.close, 0.0
            trades.append(_trade(entry, bar))
            entry = None
        equity.append(cash + shares * bar.close)
    if entry is not None:
        trades.append(_trade(entry, bars[-1]))
    return trades, equity


def _cross(fast: list[float | None], slow: list[float | None], i: int) -> str | None:
    """ "up"/"down" when the fast SMA crosses the slow one at bar i, else None."""
    f, s = fast[i], slow[i]
    pf, ps = (fast[i - 1], slow[i - 1]) if i else (None, None)
    if f is None or s is None or pf is None or ps is None:
        return None
    if f > s and pf <= ps:
        return "up"
    if f < s and pf >= ps:
        return "down"
    return None


def max_drawdown(equity: list[float]) -> float:
    peak, worst = float("-inf"), 0.0
    for value in equity:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def _trade(entry: Bar, exit_: Bar) -> Trade:
    return Trade(
        entry_date=entry.date,
        entry_price=entry.close,
        exit_date=exit_.date,
        exit_price=exit_.close,
        return_pct=round((exit_.close / entry.close - 1) * 100, 6),
    )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise JobError(f"invalid {name} {value!r}: must be a positive integer")
    return value


def run_backtest(params: dict[str, Any], *, shared_root: Path) -> BacktestResult:
    """Run the backtest a job's params describe: symbol, timeframe (1d), strategy (ma_crossover)
    and optional fast_window / slow_window / initial_capital overriding the strategy config."""
    symbol = safe_name(params.get("symbol"), what="symbol")
    timeframe = safe_name(params.get("timeframe", "1d"), what="timeframe")
    strategy_name = params.get("strategy") or "ma_crossover"
    config = load_strategy(shared_root, strategy_name)
    if config.get("type", "ma_crossover") != "ma_crossover":
        raise JobError(
            f"strategy {strategy_name!r} has type {config.get('type')!r}; "
            "only ma_crossover is supported"
        )
    fast = _positive_int(params.get("fast_window", config.get("fast_window", 5)), "fast_window")
    slow = _positive_int(params.get("slow_window", config.get("slow_window", 20)), "slow_window")
    capital = params.get("initial_capital", config.get("initial_capital", 10_000))
    if fast >= slow:
        raise JobError(f"fast_window ({fast}) must be smaller than slow_window ({slow})")
    if isinstance(capital, bool) or not isinstance(capital, int | float) or capital <= 0:
        raise JobError(f"invalid initial_capital {capital!r}: must be a positive number")
    bars = load_bars(ohlcv_path(shared_root, symbol, timeframe))
    if len(bars) <= slow:
        raise JobError(f"{symbol} {timeframe} has {len(bars)} bars; need more than {slow}")
    trades, equity = ma_crossover(
        bars, fast_window=fast, slow_window=slow, initial_capital=float(capital)
    )
    final = equity[-1]
    return BacktestResult(
        symbol=symbol,
        timeframe=timeframe,
        strategy=strategy_name,
        fast_window=fast,
        slow_window=slow,
        bars=len(bars),
        initial_capital=float(capital),
        final_equity=round(final, 6),
        total_return=round(final / float(capital) - 1, 8),
        max_drawdown=round(max_drawdown(equity), 8),
        num_trades=len(trades),
        trades=trades,
    )

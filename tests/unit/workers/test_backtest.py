"""The crossover backtest on a tiny dataset whose trades are worked out by hand.

closes        10   9    8    9    11   12   10   8    9    12   14
SMA(2)        -    9.5  8.5  8.5  10   11.5 11   9    8.5  10.5 13
SMA(3)        -    -    9    8.67 9.33 10.7 11   10   9    9.67 11.7
signal                            up             down      up
-> buy 11 (day 5), sell 8 (day 8), buy 12 (day 10), closed at the end at 14 (day 11).
Equity peaks at 10000*12/11 (day 6) and bottoms at 10000*8/11: drawdown 1 - 8/12 = 1/3.
Final equity 10000 * 8/11 * 14/12.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ktrdr.workers.backtest import Trade, max_drawdown, run_backtest, sma
from ktrdr.workers.data import JobError
from ktrdr.workers.jobs import execute

CLOSES = [10.0, 9.0, 8.0, 9.0, 11.0, 12.0, 10.0, 8.0, 9.0, 12.0, 14.0]


def test_sma_is_none_until_the_window_is_full() -> None:
    assert sma([1.0, 2.0, 3.0, 4.0], 3) == [None, None, 2.0, 3.0]


def test_max_drawdown_is_the_largest_fall_from_a_peak() -> None:
    assert max_drawdown([100.0, 120.0, 90.0, 130.0, 117.0]) == pytest.approx(0.25)
    assert max_drawdown([100.0, 110.0, 120.0]) == 0.0


def test_crossover_backtest_matches_the_hand_computed_trades(
    shared: Path, csv_writer: Callable[..., Path]
) -> None:
    csv_writer("TEST", CLOSES)

    result = run_backtest({"symbol": "TEST"}, shared_root=shared)

    assert result.trades == [
        Trade("2024-01-05", 11.0, "2024-01-08", 8.0, pytest.approx(-27.272727)),
        Trade("2024-01-10", 12.0, "2024-01-11", 14.0, pytest.approx(16.666667)),
    ]
    assert result.num_trades == 2
    assert result.final_equity == pytest.approx(10000 * 8 / 11 * 14 / 12)
    assert result.total_return == pytest.approx(8 / 11 * 14 / 12 - 1)
    assert result.max_drawdown == pytest.approx(1 / 3)
    assert (result.fast_window, result.slow_window, result.bars) == (2, 3, 11)


def test_params_override_the_strategy_config(shared: Path, csv_writer: Callable[..., Path]) -> None:
    csv_writer("TEST", CLOSES)

    result = run_backtest(
        {"symbol": "TEST", "fast_window": 1, "slow_window": 2, "initial_capital": 500},
        shared_root=shared,
    )

    assert (result.fast_window, result.slow_window, result.initial_capital) == (1, 2, 500.0)


def test_no_crossover_means_no_trades_and_flat_equity(
    shared: Path, csv_writer: Callable[..., Path]
) -> None:
    csv_writer("UP", [float(p) for p in range(1, 12)])

    result = run_backtest({"symbol": "UP"}, shared_root=shared)

    assert (result.num_trades, result.total_return, result.max_drawdown) == (0, 0.0, 0.0)


def test_the_packaged_sample_data_gives_a_stable_result() -> None:
    sample = Path(__file__).parents[3] / "ktrdr" / "sample_data"

    result = execute("backtest", {"symbol": "AAPL"}, shared_root=sample, operation_id="op_x")

    assert result["num_trades"] == 9
    assert result["trades"][0]["entry_date"] == "2024-03-19"
    assert result["total_return"] == pytest.approx(0.08441937)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbol": "NOPE"}, "NOPE_1d.csv does not exist"),
        ({"symbol": "../etc/passwd"}, "invalid symbol"),
        ({"symbol": "TEST", "timeframe": "1h"}, "TEST_1h.csv does not exist"),
        ({"symbol": "TEST", "fast_window": 3, "slow_window": 3}, "must be smaller"),
        ({"symbol": "TEST", "fast_window": 0}, "fast_window 0"),
        ({"symbol": "TEST", "slow_window": "20"}, "slow_window '20'"),
        ({"symbol": "TEST", "slow_window": 50}, "need more than 50"),
        ({"symbol": "TEST", "initial_capital": -5}, "initial_capital"),
        ({"symbol": "TEST", "strategy": "rsi"}, "unknown strategy 'rsi'"),
        ({}, "needs params.symbol"),
    ],
)
def test_bad_requests_fail_with_a_clear_error(
    shared: Path, csv_writer: Callable[..., Path], params: dict[str, object], message: str
) -> None:
    csv_writer("TEST", CLOSES)

    with pytest.raises(JobError, match=message.replace(".", r"\.").replace("(", r"\(")):
        execute("backtest", params, shared_root=shared, operation_id="op_1")


def test_a_csv_with_the_wrong_header_or_order_is_refused(shared: Path) -> None:
    (shared / "data").mkdir()
    (shared / "data" / "BAD_1d.csv").write_text("day,close\n2024-01-01,1\n")
    (shared / "data" / "REV_1d.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n2024-01-01,1,1,1,1,1\n"
    )

    with pytest.raises(JobError, match="header must be"):
        execute("backtest", {"symbol": "BAD"}, shared_root=shared, operation_id="op_1")
    with pytest.raises(JobError, match="strictly ascending"):
        execute("backtest", {"symbol": "REV"}, shared_root=shared, operation_id="op_1")


def test_an_unknown_operation_type_is_a_job_error(shared: Path) -> None:
    with pytest.raises(JobError, match="unknown operation type 'mining'"):
        execute("mining", {"symbol": "X"}, shared_root=shared, operation_id="op_1")

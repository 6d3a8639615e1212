from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ktrdr.workers.data import JobError
from ktrdr.workers.jobs import execute
from ktrdr.workers.training import lagged_dataset, least_squares, r_squared, returns


def test_returns_are_relative_changes_of_consecutive_closes() -> None:
    assert returns([10.0, 11.0, 9.9]) == pytest.approx([0.1, -0.1])


def test_lagged_dataset_pairs_each_value_with_its_predecessors() -> None:
    rows, targets = lagged_dataset([1.0, 2.0, 3.0, 4.0, 5.0], 2)

    assert rows == [[1.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 4.0, 3.0]]
    assert targets == [3.0, 4.0, 5.0]


def test_least_squares_recovers_an_exact_line() -> None:
    rows = [[1.0, x] for x in (0.0, 1.0, 2.0, 3.0)]

    assert least_squares(rows, [2.0, 5.0, 8.0, 11.0]) == pytest.approx([2.0, 3.0])


def test_least_squares_fits_the_hand_computed_line_through_noisy_points() -> None:
    # x = 0,1,2 ; y = 1,3,2 -> slope = cov/var = 0.5, intercept = mean(y) - 0.5 * mean(x) = 1.5
    rows = [[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]]

    assert least_squares(rows, [1.0, 3.0, 2.0]) == pytest.approx([1.5, 0.5])
    assert r_squared([1.5, 2.0, 2.5], [1.0, 3.0, 2.0]) == pytest.approx(0.25)


def test_collinear_features_fail_clearly() -> None:
    with pytest.raises(JobError, match="collinear"):
        least_squares([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], [1.0, 2.0, 3.0])


def test_training_learns_a_halving_return_series_and_writes_the_model(
    shared: Path, csv_writer: Callable[..., Path]
) -> None:
    # Returns 0.1, -0.05, 0.025, ... : each is exactly -0.5 times the previous one.
    closes, ret = [100.0], 0.1
    for _ in range(12):
        closes.append(closes[-1] * (1 + ret))
        ret *= -0.5
    csv_writer("HALF", closes)

    result = execute(
        "training", {"symbol": "HALF", "lags": 1}, shared_root=shared, operation_id="op_7"
    )

    assert result["coefficients"] == pytest.approx([-0.5], abs=1e-9)
    assert result["intercept"] == pytest.approx(0.0, abs=1e-9)
    assert result["r_squared"] == pytest.approx(1.0)
    assert result["directional_accuracy"] == 1.0
    assert result["samples"] == 11
    model = shared / "models" / "HALF_1d_op_7.json"
    assert result["model_path"] == str(model)
    saved = json.loads(model.read_text())
    assert saved["coefficients"] == result["coefficients"]
    assert saved["trained_on"] == ["2024-01-01", "2024-01-13"]
    assert not list((shared / "models").glob("*.tmp"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbol": "TEST", "lags": 0}, "invalid lags 0"),
        ({"symbol": "TEST", "lags": 25}, "invalid lags 25"),
        ({"symbol": "TEST", "lags": 5}, "too few for 5 lags"),
        ({"symbol": "MISSING"}, "MISSING_1d.csv does not exist"),
    ],
)
def test_bad_training_requests_fail_with_a_clear_error(
    shared: Path, csv_writer: Callable[..., Path], params: dict[str, object], message: str
) -> None:
    csv_writer("TEST", [10.0, 11.0, 10.5, 12.0, 11.0, 11.5, 12.5, 12.0])

    with pytest.raises(JobError, match=message.replace(".", r"\.")):
        execute("training", params, shared_root=shared, operation_id="op_1")

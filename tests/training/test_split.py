from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.split import NotEnoughCutoffsError, split_panel, time_split

MONTHLY = pd.date_range("2023-01-01", periods=10, freq="MS")


def _assert_embargo(split, horizon_days: int) -> None:
    horizon = pd.Timedelta(days=horizon_days)
    assert split.train_cutoffs, "no training cutoff"
    assert max(split.train_cutoffs) + horizon <= split.calibration_cutoff
    assert split.calibration_cutoff + horizon <= split.test_cutoff


def test_split_time_monthly_cutoffs_with_embargo() -> None:
    split = time_split(MONTHLY, horizon_days=90)

    assert split.test_cutoff == pd.Timestamp("2023-10-01")
    assert split.calibration_cutoff == pd.Timestamp("2023-07-01")
    assert split.train_cutoffs == tuple(pd.date_range("2023-01-01", "2023-04-01", freq="MS"))
    assert split.embargoed_cutoffs == tuple(
        pd.to_datetime(["2023-05-01", "2023-06-01", "2023-08-01", "2023-09-01"])
    )
    _assert_embargo(split, 90)


def test_split_time_without_calibration_uses_target_window() -> None:
    cutoffs = pd.date_range("2023-01-01", periods=16, freq="MS")

    split = time_split(cutoffs, horizon_days=365, calibration=False)

    assert split.calibration_cutoff is None
    assert max(split.train_cutoffs) + pd.Timedelta(days=365) <= split.test_cutoff
    assert split.train_cutoffs[-1] == pd.Timestamp("2023-04-01")


@pytest.mark.parametrize(
    ("cutoffs", "horizon_days"),
    [
        (pd.date_range("2023-01-01", periods=2, freq="MS"), 30),  # fewer than three cutoffs
        (pd.date_range("2023-01-01", periods=6, freq="MS"), 90),  # too close for a 90-day embargo
        (pd.date_range("2023-01-01", periods=15, freq="W"), 60),  # weekly, spans < 2 horizons
    ],
)
def test_split_time_too_few_cutoffs_raises(cutoffs: pd.DatetimeIndex, horizon_days: int) -> None:
    with pytest.raises(NotEnoughCutoffsError, match="need at least 3 cutoffs"):
        time_split(cutoffs, horizon_days=horizon_days)


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 900), min_size=1, max_size=25),
    horizon_days=st.integers(1, 200),
)
def test_split_time_any_cutoffs_respects_embargo(offsets: list[int], horizon_days: int) -> None:
    cutoffs = pd.Timestamp("2022-01-01") + pd.to_timedelta(offsets, unit="D")
    try:
        split = time_split(cutoffs, horizon_days=horizon_days)
    except NotEnoughCutoffsError:
        return
    _assert_embargo(split, horizon_days)
    assert split.test_cutoff == max(cutoffs)
    used = {*split.train_cutoffs, split.calibration_cutoff, split.test_cutoff}
    assert len(used) == len(split.train_cutoffs) + 2  # no cutoff in two folds
    assert used.isdisjoint(split.embargoed_cutoffs)
    assert used | set(split.embargoed_cutoffs) == set(cutoffs)


def test_split_panel_rows_have_no_overlap() -> None:
    panel = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(3)] * len(MONTHLY),
            "cutoff": MONTHLY.repeat(3),
            "x": range(3 * len(MONTHLY)),
        }
    )
    split = time_split(panel["cutoff"], horizon_days=90)

    folds = split_panel(panel, split)

    assert set(folds.train["cutoff"]) == set(split.train_cutoffs)
    assert set(folds.calibration["cutoff"]) == {split.calibration_cutoff}
    assert set(folds.test["cutoff"]) == {split.test_cutoff}
    ids = [set(f["x"]) for f in (folds.train, folds.calibration, folds.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(folds.train) == 3 * len(split.train_cutoffs)
    assert len(panel) == 30  # the input is not changed

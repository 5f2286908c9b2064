"""Time-based train / calibration / test split of a (customer_id, cutoff) panel.

Rows are never split at random: a model is always fitted on earlier cutoffs and judged on later
ones, as it will be used. The panel's label at cutoff T looks at the window (T, T + H]; a training
row's label is therefore only *known* at T + H. The **embargo** keeps every fold's label windows
closed before the next fold starts:

- test fold: the latest cutoff T_test;
- calibration (validation) fold: the latest cutoff T_cal with T_cal + H <= T_test;
- training folds: every cutoff T with T + H <= T_cal.

Cutoffs that fall inside an embargo gap are not used at all. With monthly cutoffs and H = 90 days,
ten cutoffs give four training cutoffs, one calibration and one test cutoff.

A model without a calibration fold (CLV) uses `calibration=False`: training cutoffs are then those
with T + H <= T_test, and H is the target's own window (365 days for `clv_365`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

CUTOFF = "cutoff"


class NotEnoughCutoffsError(ValueError):
    """Raised when the panel's cutoffs cannot give train, calibration and test folds."""


@dataclass(frozen=True)
class TimeSplit:
    """Which cutoffs go to which fold.

    Attributes:
        train_cutoffs: Cutoffs of the training fold, ascending.
        calibration_cutoff: Cutoff of the calibration / validation fold (None without one).
        test_cutoff: Cutoff of the test fold (the latest in the panel).
        horizon_days: H, the label window the embargo was computed for.
        embargoed_cutoffs: Cutoffs left out because their label window overlaps a later fold.
    """

    train_cutoffs: tuple[pd.Timestamp, ...]
    calibration_cutoff: pd.Timestamp | None
    test_cutoff: pd.Timestamp
    horizon_days: int
    embargoed_cutoffs: tuple[pd.Timestamp, ...] = ()

    def describe(self) -> dict[str, str]:
        """The split as strings, ready to log as MLflow params."""
        return {
            "train_cutoffs": ",".join(c.date().isoformat() for c in self.train_cutoffs),
            "calibration_cutoff": (
                self.calibration_cutoff.date().isoformat() if self.calibration_cutoff else ""
            ),
            "test_cutoff": self.test_cutoff.date().isoformat(),
            "embargoed_cutoffs": ",".join(c.date().isoformat() for c in self.embargoed_cutoffs),
        }


@dataclass(frozen=True)
class Folds:
    """The panel cut into its three folds (copies; the panel itself is not changed)."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame


def time_split(
    cutoffs: Sequence[pd.Timestamp] | pd.Series | pd.DatetimeIndex,
    *,
    horizon_days: int,
    min_train_cutoffs: int = 1,
    calibration: bool = True,
) -> TimeSplit:
    """Choose train, calibration and test cutoffs with an embargo of `horizon_days`.

    Args:
        cutoffs: The panel's cutoff column or its distinct cutoffs (duplicates are fine).
        horizon_days: H, the churn label window in days.
        min_train_cutoffs: Fewest training cutoffs accepted.
        calibration: Whether to hold out a calibration fold between training and test.

    Returns:
        The split; see the module docstring for the rule.

    Raises:
        NotEnoughCutoffsError: If there are too few cutoffs, or they are too close together, to
            leave `min_train_cutoffs` training cutoffs after the embargo.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    distinct = sorted(pd.DatetimeIndex(pd.to_datetime(pd.Series(cutoffs))).dropna().unique())
    horizon = pd.Timedelta(days=horizon_days)
    listed = ", ".join(c.date().isoformat() for c in distinct) or "none"
    folds = min_train_cutoffs + (2 if calibration else 1)
    chain = (
        "on or before the calibration cutoff, and calibration labels on or before the test cutoff"
        if calibration
        else "on or before the test cutoff"
    )
    need = (
        f"need at least {folds} cutoffs spaced so that training labels end "
        f"(cutoff + {horizon_days} days) {chain}; the panel has {len(distinct)}: {listed}"
    )
    if len(distinct) < folds:
        raise NotEnoughCutoffsError(need)
    test = distinct[-1]
    calibration_cutoff: pd.Timestamp | None = None
    train_end = test
    if calibration:
        candidates = [c for c in distinct if c + horizon <= test]
        if not candidates:
            raise NotEnoughCutoffsError(need)
        calibration_cutoff = train_end = candidates[-1]
    train = tuple(c for c in distinct if c + horizon <= train_end)
    if len(train) < min_train_cutoffs:
        raise NotEnoughCutoffsError(need)
    used = {*train, calibration_cutoff, test}
    embargoed = tuple(c for c in distinct if c not in used)
    return TimeSplit(
        train_cutoffs=train,
        calibration_cutoff=calibration_cutoff,
        test_cutoff=test,
        horizon_days=horizon_days,
        embargoed_cutoffs=embargoed,
    )


def split_panel(panel: pd.DataFrame, split: TimeSplit, *, cutoff_column: str = CUTOFF) -> Folds:
    """Cut `panel` into the folds of `split`; embargoed cutoffs' rows are dropped.

    Without a calibration cutoff the calibration frame is empty.

    Args:
        panel: One row per (customer_id, cutoff).
        split: From `time_split`.
        cutoff_column: Name of the cutoff column.

    Returns:
        The train, calibration and test frames, each with a fresh RangeIndex.
    """
    cutoff = pd.to_datetime(panel[cutoff_column])
    train = panel[cutoff.isin(list(split.train_cutoffs))].reset_index(drop=True)
    if split.calibration_cutoff is None:
        calibration = panel.iloc[0:0].reset_index(drop=True)
    else:
        calibration = panel[cutoff == split.calibration_cutoff].reset_index(drop=True)
    test = panel[cutoff == split.test_cutoff].reset_index(drop=True)
    return Folds(train=train, calibration=calibration, test=test)

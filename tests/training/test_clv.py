from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import CATEGORICAL, FEATURES

from training.clv import AverageCLVBaseline, CLVModel, clv_baseline_columns, expected_active_share
from training.pipeline import evaluate_clv


def test_fit_clv_model_beats_average_baseline(panel: pd.DataFrame) -> None:
    evaluation = evaluate_clv(
        panel,
        feature_columns=FEATURES,
        categorical=CATEGORICAL,
        feature_set="churn_features:test",
        params={"n_estimators": 150, "num_leaves": 15},
    )
    metrics = evaluation.metrics

    assert metrics.loc["model", "mae"] < 0.9 * metrics.loc["average_clv", "mae"]
    assert metrics.loc["model", "rmse"] < metrics.loc["average_clv", "rmse"]
    assert metrics.loc["model", "spearman"] > metrics.loc["average_clv", "spearman"]
    assert evaluation.split.calibration_cutoff is None
    assert max(evaluation.split.train_cutoffs) + pd.Timedelta(days=365) <= (
        evaluation.split.test_cutoff
    )


def test_predict_clv_model_tweedie_is_non_negative(panel: pd.DataFrame) -> None:
    train = panel[panel["cutoff"] == panel["cutoff"].min()]
    target = train["clv_365"].to_numpy() - 5.0  # some negative targets (refunds)

    model = CLVModel(categorical=CATEGORICAL, n_estimators=30).fit(train[FEATURES], target)

    assert (model.predict(train[FEATURES]) > 0).all()


@pytest.mark.parametrize(
    ("churn_rate", "expected"),
    [
        (0.0, 1.0),
        (1.0, 0.0),
        # s = 0.75, m = 4: (1 - 0.75^4) / (-4 ln 0.75)
        (0.25, (1 - 0.75**4) / (-4 * math.log(0.75))),
    ],
)
def test_compute_expected_active_share(churn_rate: float, expected: float) -> None:
    share = expected_active_share(churn_rate, horizon_days=90, target_days=360)

    assert share == pytest.approx(expected)


def test_predict_average_clv_baseline_hand_example() -> None:
    X = pd.DataFrame({"n_purchase_90d": [2, 0, 1], "revenue_90d": [100.0, 0.0, 30.0]})
    baseline = AverageCLVBaseline(
        frequency="n_purchase_90d", monetary="revenue_90d", horizon_days=90
    ).fit(X, churned=[0, 0, 0])

    predicted = baseline.predict(X)

    # Average order value 50 and 30; 2 and 1 purchases per 90 days; no churn -> active all year.
    np.testing.assert_allclose(predicted, [50 * 2 * 365 / 90, 0.0, 30 * 365 / 90])
    assert baseline.average_order_value_ == pytest.approx(130 / 3)


def test_pick_clv_baseline_columns_longest_window() -> None:
    columns = ["n_purchase_30d", "n_purchase_365d", "revenue_30d", "revenue_365d"]

    assert clv_baseline_columns(columns) == ("n_purchase_365d", "revenue_365d")
    with pytest.raises(ValueError, match="revenue_90d"):
        clv_baseline_columns(["n_purchase_90d"])

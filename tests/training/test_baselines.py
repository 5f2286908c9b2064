from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.baselines import RFMBaseline, logistic_baseline, rfm_columns


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            [
                "n_purchase_30d",
                "n_purchase_365d",
                "n_purchase_trend_30d",
                "revenue_90d",
                "days_since_last_purchase",
            ],
            ("days_since_last_purchase", "n_purchase_365d", "revenue_90d"),
        ),
        (
            ["purchases_30d", "revenue_30d", "revenue_365d", "days_since_last_event"],
            ("days_since_last_event", "purchases_30d", "revenue_365d"),
        ),
    ],
)
def test_pick_rfm_columns_longest_windows(columns: list[str], expected: tuple[str, ...]) -> None:
    assert rfm_columns(columns) == expected


def test_pick_rfm_columns_missing_raises() -> None:
    with pytest.raises(ValueError, match="RFM baseline needs"):
        rfm_columns(["n_purchase_30d", "days_since_last_event"])


def _rfm_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "recency": rng.integers(0, 200, size=n).astype(float),
            "frequency": rng.poisson(3, size=n),
            "monetary": rng.gamma(2, 50, size=n),
        }
    )


def test_score_rfm_baseline_ranks_lapsed_customers_riskier() -> None:
    rng = np.random.default_rng(0)
    train, cal = _rfm_frame(1000, rng), _rfm_frame(1000, rng)
    y_cal = (cal["recency"] > 100).astype(int)
    model = RFMBaseline(recency="recency", frequency="frequency", monetary="monetary")
    model.fit(train, np.zeros(len(train)), X_calib=cal, y_calib=y_cal)
    probe = pd.DataFrame(
        {"recency": [5.0, 190.0, np.nan], "frequency": [10, 0, 0], "monetary": [900.0, 0.0, 0.0]}
    )

    scores = model.risk_score(probe)
    p = model.predict_proba(probe)[:, 1]

    assert scores.tolist() == [3.0, 15.0, 15.0]  # best, worst, never purchased = worst
    assert p[0] < p[1]
    assert ((p >= 0) & (p <= 1)).all()


def test_fit_logistic_baseline_handles_missing_values_and_unknown_categories() -> None:
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "gap": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "segment": pd.array(rng.choice(["a", "b"], size=n), dtype="str"),
            "flag": rng.random(n) < 0.5,
        }
    )
    y = (X["x"] + (X["segment"] == "b") > 0.5).astype(int)
    model = logistic_baseline(["x", "gap", "segment", "flag"], ["segment"]).fit(X, y)
    probe = X.head(3).copy()
    probe["segment"] = pd.array(["c", None, "b"], dtype="str")

    p = model.predict_proba(probe)[:, 1]

    assert np.isfinite(p).all()
    assert model.score(X, y) > 0.85

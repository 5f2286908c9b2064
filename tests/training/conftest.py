"""A synthetic training panel with a known, deliberately non-linear churn signal.

Column names and dtypes follow `features.definitions.CHURN_FEATURES` (counts `n_<type>_<N>d`
as int64, `avg_nps`, `loyalty_member` as float 0/1, categoricals as `str`), a subset of them.

Churn depends on *interactions* (long recency only matters with few recent purchases; unresolved
complaints only for non-members; a low NPS only in the business segment; an XOR of low CSAT and
recent offers) and on a U-shape in tenure, which trees can find and a linear model or an RFM score
cannot. CLV multiplies past revenue by survival and by a
segment x loyalty effect the average-based baseline does not see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

FEATURES = [
    "days_since_last_purchase",
    "days_since_last_event",
    "n_purchase_30d",
    "n_purchase_90d",
    "n_purchase_365d",
    "revenue_30d",
    "revenue_90d",
    "revenue_365d",
    "n_purchase_trend_30d",
    "n_complaint_90d",
    "unresolved_complaints",
    "last_nps",
    "avg_nps",
    "last_csat",
    "n_offer_sent_90d",
    "tenure_days",
    "noise",
    "segment",
    "country",
    "language",
    "loyalty_member",
]
CATEGORICAL = ["segment", "country", "language"]
FEATURE_SET = "churn_features:test"


def true_churn_logit(frame: pd.DataFrame) -> np.ndarray:
    """The data-generating log-odds of churn (interactions only, plus an intercept)."""
    dslp = frame["days_since_last_purchase"].fillna(999).to_numpy()
    lapsed = (dslp > 60) & (frame["n_purchase_90d"].to_numpy() <= 1)
    member = frame["loyalty_member"].to_numpy() == 1.0
    angry = (frame["unresolved_complaints"].to_numpy() > 0) & ~member
    nps = frame["last_nps"].fillna(8).to_numpy()
    unhappy_business = (nps <= 6) & (frame["segment"].to_numpy() == "business")
    tenure = frame["tenure_days"].to_numpy()
    odd_tenure = (tenure < 350) | (tenure > 1250)  # U-shaped: a straight line cannot fit it
    low_csat = frame["last_csat"].fillna(3).to_numpy() <= 2
    pestered = frame["n_offer_sent_90d"].to_numpy() >= 1
    return (
        -2.4
        + 2.4 * lapsed
        + 2.0 * angry
        + 1.8 * unhappy_business
        + 1.5 * odd_tenure
        + 1.5 * (low_csat != pestered)  # XOR: no marginal effect of either alone
    )


def make_panel(n_customers: int = 800, n_cutoffs: int = 16, seed: int = 0) -> pd.DataFrame:
    """One row per (customer, monthly cutoff) with features, `churned` and `clv_365`."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:05d}" for i in range(n_customers)])
    country = rng.choice(["DE", "FR", "US", "GB"], size=n_customers, p=[0.3, 0.2, 0.3, 0.2])
    language = np.select([country == "DE", country == "FR"], ["de", "fr"], "en")
    segment = rng.choice(["retail", "business", "premium"], size=n_customers, p=[0.55, 0.3, 0.15])
    loyalty = rng.random(n_customers) < 0.4
    activity = rng.gamma(2.0, 0.6, size=n_customers)
    order_value = rng.lognormal(3.5, 0.4, size=n_customers)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(
        rng.integers(0, 1000, size=n_customers), unit="D"
    )
    cutoffs = pd.date_range("2023-01-01", periods=n_cutoffs, freq="MS")
    frames = []
    for cutoff in cutoffs:
        n = n_customers
        lam = activity * rng.uniform(0.6, 1.4, size=n)
        p30 = rng.poisson(lam)
        prev30 = rng.poisson(lam)
        p90 = p30 + prev30 + rng.poisson(lam)
        p365 = p90 + rng.poisson(lam * 9)
        dslp = np.minimum(rng.exponential(30 / np.maximum(lam, 0.05)), 400).round()
        dslp = np.where(p30 > 0, np.minimum(dslp, 29), np.maximum(dslp, 30))
        dslp = np.where(rng.random(n) < 0.03, np.nan, dslp)
        complaints = rng.poisson(0.35, size=n)
        nps = rng.integers(0, 11, size=n).astype(float)
        nps[rng.random(n) < 0.25] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "cutoff": cutoff,
                    "days_since_last_purchase": dslp,
                    "days_since_last_event": np.fmin(dslp, rng.exponential(10, size=n).round()),
                    "n_purchase_30d": p30,
                    "n_purchase_90d": p90,
                    "n_purchase_365d": p365,
                    "revenue_30d": p30 * order_value,
                    "revenue_90d": p90 * order_value,
                    "revenue_365d": p365 * order_value,
                    "n_purchase_trend_30d": p30 - prev30,
                    "n_complaint_90d": complaints,
                    "unresolved_complaints": rng.binomial(complaints, 0.5),
                    "last_nps": nps,
                    "avg_nps": np.clip(nps + rng.normal(0.5, 1.0, size=n), 0, 10).round(1),
                    "last_csat": rng.integers(1, 6, size=n).astype(float),
                    "n_offer_sent_90d": rng.poisson(0.5, size=n),
                    "tenure_days": (cutoff - signup).days.to_numpy(),
                    "noise": rng.normal(size=n),
                    "segment": pd.array(segment, dtype="str"),
                    "country": pd.array(country, dtype="str"),
                    "language": pd.array(language, dtype="str"),
                    "loyalty_member": loyalty.astype(float),
                }
            )
        )
    panel = pd.concat(frames, ignore_index=True)
    p_churn = 1 / (1 + np.exp(-true_churn_logit(panel)))
    panel["churned"] = rng.random(len(panel)) < p_churn
    boost = np.where(
        (panel["segment"] == "premium") & (panel["loyalty_member"] == 1.0),
        2.5,
        np.where((panel["segment"] == "retail") & (panel["country"] == "US"), 0.5, 1.0),
    )
    run_rate = 0.5 * panel["revenue_365d"] + 2.0 * panel["revenue_90d"]
    expected = run_rate * (1 - p_churn) * boost
    panel["clv_365"] = expected * rng.gamma(4.0, 0.25, size=len(panel))
    return panel


@pytest.fixture(scope="session")
def panel() -> pd.DataFrame:
    return make_panel()

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.reasons import phrase, reason_codes


@pytest.mark.parametrize(
    ("feature", "value", "row", "expected"),
    [
        ("unresolved_complaints", 2, {}, "2 unresolved complaints"),
        ("unresolved_complaints", 1, {}, "1 unresolved complaint"),
        ("open_complaint", 1.0, {"open_complaint_days": 12.0}, "a complaint open for 12 days"),
        ("open_complaint", 0.0, {"open_complaint_days": 0.0}, "no open complaint"),
        ("open_complaint_days", 1.0, {"open_complaint_days": 1.0}, "a complaint open for 1 day"),
        ("offer_redemption_rate", 0.25, {}, "offers redeemed: 25%"),
        ("offer_redemption_rate", math.nan, {}, "offers redeemed: not known yet"),
        ("online_share_365d", 0.6, {}, "purchases online: 60%"),
        ("n_offer_sent_all", 3, {}, "3 offers sent so far"),
        ("days_since_last_purchase", 74.0, {}, "no purchase for 74 days"),
        ("days_since_last_purchase", math.nan, {}, "no purchase yet"),
        ("days_since_last_event", 12.0, {}, "no activity for 12 days"),
        ("days_since_last_offer", 3.0, {}, "last offer 3 days ago"),
        ("last_nps", 3.0, {"avg_nps": 7.5}, "NPS fell to 3"),
        ("last_nps", 3.0, {"mean_nps": 7.5}, "NPS fell to 3"),
        ("last_nps", 3.0, {"avg_nps": 2.0}, "NPS of 3"),
        ("last_nps", None, {}, "no NPS answer yet"),
        ("last_csat", 2.0, {"avg_csat": 4.2}, "CSAT fell to 2/5"),
        ("avg_nps", 6.25, {}, "average NPS 6.2"),
        # 2 purchases now, 5 the month before: down 60%.
        ("n_purchase_trend_30d", -3, {"n_purchase_30d": 2}, "purchases down 60% vs previous month"),
        ("n_purchase_trend_30d", 1, {"n_purchase_30d": 5}, "purchases up 25% vs previous month"),
        (
            "n_purchase_trend_30d",
            2,
            {"n_purchase_30d": 2},
            "2 more purchases than the previous month",
        ),
        ("n_purchase_trend_30d", -2, {}, "2 fewer purchases than the previous month"),
        ("revenue_trend_30d", -50.0, {"revenue_30d": 50.0}, "spending down 50% vs previous month"),
        ("n_complaint_90d", 1, {}, "1 complaint in the last 90 days"),
        ("complaints_90d", 3, {}, "3 complaints in the last 90 days"),
        ("n_purchase_30d", 0, {}, "no purchases in the last month"),
        ("n_purchase_365d", 3, {}, "3 purchases in the last year"),
        ("n_support_contact_30d", 4, {}, "4 support contacts in the last month"),
        ("n_offer_sent_90d", 4, {}, "4 offers sent in the last 90 days"),
        ("n_events_30d", 1, {}, "1 event in the last month"),
        ("revenue_90d", 0.0, {}, "no spending in the last 90 days"),
        ("revenue_30d", 1234.4, {}, "spent 1,234 in the last month"),
        ("refund_amount_90d", 80.0, {}, "refunds of 80 in the last 90 days"),
        ("avg_resolution_days", 12.4, {}, "complaints took 12 days to resolve on average"),
        ("tenure_days", 45, {}, "customer for only 45 days"),
        ("tenure_days", 730, {}, "customer for 2.0 years"),
        ("loyalty_member", 0.0, {}, "not a loyalty member"),
        ("has_loyalty_join", 1.0, {}, "loyalty member"),
        ("marketing_consent", False, {}, "no marketing consent"),
        ("segment", "business", {}, "business segment"),
        ("country", "DE", {}, "country DE"),
        ("weird_score", 1.5, {}, "weird score: 1.50"),
        ("weird_label", "x", {}, "weird label: x"),
    ],
)
def test_phrase_feature_value(feature: str, value: object, row: dict, expected: str) -> None:  # type: ignore[type-arg]
    assert phrase(feature, value, row) == expected


def test_build_reason_codes_hand_made_contributions() -> None:
    contributions = pd.DataFrame(
        {
            "unresolved_complaints": [0.9, -0.2, 0.0],
            "days_since_last_purchase": [0.4, 1.2, -0.1],
            "last_nps": [0.1, 0.3, -0.3],
            "bias": [5.0, 5.0, 5.0],
        },
        index=["a", "b", "c"],
    )
    features = pd.DataFrame(
        {
            "unresolved_complaints": [2, 0, 0],
            "days_since_last_purchase": [74.0, 120.0, 3.0],
            "last_nps": [3.0, 9.0, 10.0],
            "avg_nps": [8.0, 9.0, 9.5],
        },
        index=["a", "b", "c"],
    )

    reasons = reason_codes(contributions, features, top_k=2)

    assert reasons.loc["a", "reason_1"] == "2 unresolved complaints"
    assert reasons.loc["a", "reason_2"] == "no purchase for 74 days"
    assert reasons.loc["b", "reason_1"] == "no purchase for 120 days"
    assert reasons.loc["b", "reason_2"] == "NPS of 9"
    assert reasons.loc["b", "reason_feature_2"] == "last_nps"
    assert reasons.loc["b", "reason_weight_1"] == pytest.approx(1.2)
    # Nothing pushes "c" towards churn: no reason, and `bias` is never one.
    assert pd.isna(reasons.loc["c", "reason_1"])
    assert math.isnan(reasons.loc["c", "reason_weight_1"])


def test_build_reason_codes_matches_row_by_row_reference() -> None:
    rng = np.random.default_rng(0)
    names = ["n_purchase_30d", "n_complaint_90d", "tenure_days", "segment", "mystery"]
    n = 2000
    contributions = pd.DataFrame(rng.normal(size=(n, len(names))), columns=names)
    features = pd.DataFrame(
        {
            "n_purchase_30d": rng.integers(0, 5, size=n),
            "n_complaint_90d": rng.integers(0, 3, size=n),
            "tenure_days": rng.integers(10, 2000, size=n),
            "segment": rng.choice(["retail", "business"], size=n),
            "mystery": rng.normal(size=n),
        }
    )

    fast = reason_codes(contributions, features, top_k=3)

    for i in rng.choice(n, size=200, replace=False):
        row = contributions.iloc[i].sort_values(ascending=False)
        positive = row[row > 0].head(3)
        expected = [phrase(f, features.iloc[i][f]) for f in positive.index]
        got = [fast.iloc[i][f"reason_{j}"] for j in (1, 2, 3)]
        assert got[: len(expected)] == expected
        assert all(pd.isna(g) for g in got[len(expected) :])

"""Business rules, net value, exploration and budgeted campaigns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.offers import Offer
from training.policy import (
    best_actions,
    eligibility,
    expected_costs,
    exploration_probabilities,
    explore,
    net_values,
    plan_campaign,
)

OFFERS = [
    Offer(
        offer_id="discount",
        kind="discount",
        cost=10,
        contact_cost=1,
        marketing=True,
        messages={"en": "10% off", "de": "10% Rabatt"},
        max_per_customer_30d=1,
    ),
    Offer(
        offer_id="call",
        kind="apology_call",
        cost=5,
        contact_cost=0,
        marketing=False,
        messages={"en": "We are sorry", "de": "Entschuldigung", "nl": "Sorry"},
    ),
    Offer(
        offer_id="points",
        kind="loyalty_points",
        cost=2,
        marketing=True,
        messages={"en": "Points", "nl": "Punten"},
        eligibility={"loyalty_member": True, "min_tenure_days": 30, "segments": ["retail"]},
    ),
]
PROFILES = pd.DataFrame(
    {
        "segment": ["retail", "retail", "business", "retail"],
        "country": ["DE", "NL", "GB", "GB"],
        "language": ["de", "nl", "en", "en-GB"],
        "loyalty_member": [True, True, True, False],
        "marketing_consent": [True, True, False, True],
        "tenure_days": [100, 10, 400, 400],
    },
    index=pd.Index(["c1", "c2", "c3", "c4"], name="customer_id"),
)


def test_eligibility_applies_every_rule() -> None:
    recent = pd.DataFrame({"discount": [1]}, index=["c4"])
    allowed = eligibility(PROFILES, OFFERS, recent_contacts=recent)
    assert allowed.loc["c1"].to_dict() == {
        "none": True,
        "discount": True,
        "call": True,
        "points": False,
    }  # points: no German message
    assert allowed.loc["c2"].to_dict() == {
        "none": True,
        "discount": False,
        "call": True,
        "points": False,
    }  # no nl discount; tenure 10 < 30
    assert allowed.loc["c3"].to_dict() == {
        "none": True,
        "discount": False,
        "call": True,
        "points": False,
    }  # no consent: service action only
    assert not allowed.loc["c4", "discount"]  # contact cap reached
    assert not allowed.loc["c4", "points"]  # not a loyalty member


def test_net_values_recommend_none_when_nothing_pays() -> None:
    delta = pd.DataFrame(
        {"discount": [0.10, 0.01], "call": [0.0, 0.02], "points": [0.0, 0.0]}, index=["c1", "c2"]
    )
    p_redeem = pd.DataFrame(
        {"discount": [0.5, 0.5], "call": [1.0, 1.0], "points": [0.2, 0.2]}, index=["c1", "c2"]
    )
    costs = expected_costs(p_redeem, OFFERS)
    assert costs.loc["c1", "discount"] == pytest.approx(0.5 * 10 + 1)
    values = net_values(delta, pd.Series([200.0, 100.0], index=["c1", "c2"]), costs)
    assert values.loc["c1", "discount"] == pytest.approx(0.10 * 200 - 6)
    eligible = pd.DataFrame(True, index=values.index, columns=values.columns)
    assert best_actions(values, eligible).tolist() == ["discount", "none"]
    eligible.loc["c1", "discount"] = False
    assert best_actions(values, eligible).loc["c1"] == "none"


def test_explore_logs_true_propensities() -> None:
    values = pd.DataFrame({"none": 0.0, "a": [1.0, -1.0], "b": [0.5, -2.0]}, index=["x", "y"])
    eligible = pd.DataFrame(True, index=values.index, columns=values.columns)
    eligible.loc["y", "b"] = False
    probs = exploration_probabilities(values, eligible, epsilon=0.1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs.loc["x", "a"] == pytest.approx(0.9 + 0.1 / 3)
    assert probs.loc["y", "b"] == 0.0
    chosen, propensity = explore(values, eligible, epsilon=0.1, rng=np.random.default_rng(0))
    for customer in values.index:
        assert propensity[customer] == pytest.approx(probs.loc[customer, chosen[customer]])
    greedy, certain = explore(values, eligible, epsilon=0.0, rng=np.random.default_rng(0))
    assert greedy.tolist() == ["a", "none"] and certain.tolist() == [1.0, 1.0]


def test_plan_campaign_respects_budget_limits_and_bound() -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    index = pd.Index([f"c{i}" for i in range(n)])
    values = pd.DataFrame(
        {"none": 0.0, "a": rng.normal(3, 4, n), "b": rng.normal(2, 3, n)}, index=index
    )
    costs = pd.DataFrame(
        {"none": 0.0, "a": rng.uniform(1, 5, n), "b": rng.uniform(0.5, 2, n)}, index=index
    )
    eligible = pd.DataFrame(True, index=index, columns=values.columns)
    plan = plan_campaign(values, costs, eligible, budget=1_000, offer_limits={"b": 300})
    chosen = plan.allocation
    assert chosen["customer_id"].is_unique
    assert plan.total_cost <= 1_000
    assert (chosen["offer_id"] == "b").sum() <= 300
    assert (chosen["expected_value"] > 0).all()
    assert plan.total_value <= plan.upper_bound + 1e-6
    unlimited = plan_campaign(values, costs, eligible, budget=1_000)
    assert unlimited.bound_gap < 0.02  # greedy by value per cost is close to the LP bound

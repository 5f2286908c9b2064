"""Logged decisions, their outcomes, and the next-offer job end to end on a small demo world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.demo import generate_world
from features.offers import parse_catalog
from training.next_offer import (
    Goal,
    PolicyReport,
    active_at_cutoff,
    decision_outcomes,
    logged_decisions,
)
from training.offer_pipeline import DEFAULT_LEARNER, LEARNERS, choose_learner, train_next_offer
from training.registry import load_champion

T = pd.Timestamp("2025-01-01 06:00")


def event(kind: str, days: float, offer: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"{kind}{days}",
        "customer_id": "C1",
        "event_type": kind,
        "timestamp": T + pd.Timedelta(days=days),
        "offer_id": offer,
        "propensity": np.nan,
        "amount": np.nan,
        "score": np.nan,
    } | extra


def outcome_of(*later: dict[str, object], goal: Goal | None = None) -> pd.Series:
    events = pd.DataFrame([event("offer_sent", 0, "gift", propensity=0.5), *later])
    decisions = logged_decisions(events)
    return decision_outcomes(
        events, decisions, goal=goal or Goal(), data_end=T + pd.Timedelta(days=400)
    ).iloc[0]


@pytest.mark.parametrize(
    ("later", "retained", "redeemed"),
    [
        ((event("purchase", 10),), 1.0, False),
        ((event("purchase", 91),), 0.0, False),  # outside (t, t + 90d]
        ((event("purchase", 10), event("cancellation", 20)), 0.0, False),
        ((event("purchase", 10), event("offer_redeemed", 29, "gift")), 1.0, True),
        ((event("offer_redeemed", 31, "gift"),), 0.0, False),  # after 30 days
        ((event("offer_redeemed", 5, "discount"),), 0.0, False),  # another offer
    ],
)
def test_decision_outcomes_follow_the_contract(
    later: tuple[dict[str, object], ...], retained: float, redeemed: bool
) -> None:
    row = outcome_of(*later)
    assert (row["outcome"], row["redeemed"], row["complete"]) == (retained, redeemed, True)


def test_decision_outcomes_with_a_short_goal() -> None:
    goal = Goal(event_type="visit", window_days=14)
    assert outcome_of(event("visit", 13), goal=goal)["outcome"] == 1.0
    assert outcome_of(event("visit", 15), goal=goal)["outcome"] == 0.0


def test_active_at_cutoff_matches_panel_rule() -> None:
    features = pd.DataFrame(
        {
            "days_since_last_purchase": [10.0, 100.0, 10.0, np.nan],
            "days_since_last_cancellation": [np.nan, np.nan, 5.0, np.nan],
        }
    )
    assert active_at_cutoff(features, 90).tolist() == [True, False, False, False]


def report_with_terms(terms: np.ndarray) -> PolicyReport:
    return PolicyReport(values={}, auuc={}, qini={}, best_single_offer="", learned_ips_terms=terms)


@pytest.mark.parametrize(
    ("shift", "chosen"),
    [
        (0.0, DEFAULT_LEARNER),  # a tie keeps the default
        (0.05, DEFAULT_LEARNER),  # better on average, but within the noise
        (-1.0, DEFAULT_LEARNER),  # clearly worse
        (1.0, "t"),  # clearly better on the same decisions
    ],
)
def test_choose_learner_keeps_default_unless_clearly_beaten(shift: float, chosen: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(100.0, 50.0, 4_000)  # the values' spread: each alone is +-1.5 wide
    paired_noise = rng.normal(0.0, 5.0, 4_000)  # CI of a difference: +-0.15
    reports = {
        DEFAULT_LEARNER: report_with_terms(base),
        "t": report_with_terms(base + shift + paired_noise),
        "s": report_with_terms(base - 0.5 + paired_noise),
    }
    got, versus = choose_learner(reports)
    assert got == chosen
    assert set(versus) == {"t", "s"}
    assert versus["t"].low < shift < versus["t"].high


def test_train_next_offer_registers_and_evaluates(tmp_path: Path) -> None:
    world = generate_world(3_000, seed=1)
    offers = parse_catalog(world.offers)
    result = train_next_offer(
        world.customers,
        world.events,
        offers,
        lambda x: np.full(len(x), 300.0),
        truth=world.truth,
        out_dir=tmp_path / "report",
        num_threads=1,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert result.learner in LEARNERS
    others = [name for name in LEARNERS if name != DEFAULT_LEARNER]
    assert {f"{name}.ips_minus_{DEFAULT_LEARNER}_low" for name in others} <= set(result.metrics)
    learned = result.reports[result.learner].values["learned"]
    assert learned.dr_low <= learned.dr <= learned.dr_high
    assert set(result.reports[result.learner].values) == {
        "learned",
        "random",
        "best_single",
        "no_offers",
        "logging",
    }
    assert result.oracle is not None and result.oracle["oracle_value"] > 0
    # Every learner is scored against the same oracle, and the model that goes out was refitted
    # on all the decisions: about four times the held-out quarter.
    assert set(result.oracle_by_learner) == set(LEARNERS)
    oracle_values = {v["oracle_value"] for v in result.oracle_by_learner.values()}
    assert oracle_values == {result.oracle["oracle_value"]}
    assert result.model.n_decisions_ > 3 * learned.n
    assert (tmp_path / "report" / "qini.png").exists()
    assert "Off-policy value" in result.report_path.read_text()
    loaded = load_champion("next-offer", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert loaded.version == 1
    assert list(loaded.model.offers_) == sorted(o.offer_id for o in offers)

"""Meta-learners recover known heterogeneous effects from logged randomised decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.uplift import BoostedShiftLearner, DRLearner, LogitLearner, SLearner, TLearner

ACTIONS = np.array(["none", "discount", "call"])


def logged_world(
    n: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Features, logged action, propensity, outcome and the true effects of each offer."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "price_sensitive": rng.normal(size=n),
            "complaint": rng.integers(0, 2, n),
            "noise": rng.normal(size=n),
        }
    )
    # The logging policy depends on a feature, so propensities vary by customer.
    p_none = np.where(x["noise"] > 0, 0.5, 0.3)
    probs = np.c_[p_none, (1 - p_none) / 2, (1 - p_none) / 2]
    choice = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    truth = pd.DataFrame(
        {
            "discount": np.where(x["price_sensitive"] > 0, 0.25, -0.10),
            "call": np.where(x["complaint"] == 1, 0.30, 0.0),
        }
    )
    base = 0.5 + 0.1 * np.tanh(x["noise"].to_numpy())
    effect = np.c_[np.zeros(n), truth.to_numpy()][np.arange(n), choice]
    outcome = (rng.random(n) < np.clip(base + effect, 0, 1)).astype(float)
    return x, ACTIONS[choice], probs[np.arange(n), choice], outcome, truth


@pytest.mark.parametrize(
    "learner",
    [
        DRLearner(seed=1, num_threads=1),
        TLearner(seed=1, num_threads=1),
        SLearner(seed=1, num_threads=1),
        LogitLearner(seed=1, num_threads=1),
        BoostedShiftLearner(seed=1, num_threads=1),
    ],
)
def test_fit_learner_recovers_effect_signs(
    learner: DRLearner | TLearner | SLearner | LogitLearner | BoostedShiftLearner,
) -> None:
    x, action, propensity, outcome, _ = logged_world(12_000, seed=0)
    learner.fit(x, action, propensity, outcome)
    test_x, *_, truth = logged_world(3_000, seed=1)
    effects = learner.predict_effects(test_x)
    assert sorted(effects.columns) == ["call", "discount"]
    for offer in ("discount", "call"):
        assert np.corrcoef(effects[offer], truth[offer])[0, 1] > 0.6, offer
    # The best offer it would pick matches the true best for most customers.
    picked = effects.idxmax(axis=1)
    assert (picked == truth.idxmax(axis=1)).mean() > 0.75


def test_fit_learner_refuses_data_without_controls() -> None:
    x, action, propensity, outcome, _ = logged_world(2_000, seed=0)
    treated = action != "none"
    with pytest.raises(ValueError, match="logged control decisions"):
        DRLearner().fit(x[treated], action[treated], propensity[treated], outcome[treated])


def test_logit_learner_uncertainty_shrinks_with_data() -> None:
    x, action, propensity, outcome, _ = logged_world(12_000, seed=0)
    small = LogitLearner(seed=1, num_threads=1).fit(
        x[:3_000], action[:3_000], propensity[:3_000], outcome[:3_000]
    )
    large = LogitLearner(seed=1, num_threads=1).fit(x, action, propensity, outcome)
    test_x, *_ = logged_world(2_000, seed=1)
    se_small = small.effect_standard_errors(test_x)
    se_large = large.effect_standard_errors(test_x)
    assert (se_large.to_numpy() > 0).all()
    # Four times the decisions: about half the standard error.
    assert 0.35 < float(se_large.mean().mean() / se_small.mean().mean()) < 0.75

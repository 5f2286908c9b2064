"""Off-policy estimates agree with the true value of a policy; Qini ranks good scores higher."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.offpolicy import (
    auuc,
    deterministic,
    ips_terms,
    paired_difference,
    policy_value,
    qini_curve,
    uniform,
)

ACTIONS = ["none", "a", "b"]


def bandit(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Mean reward of each action per row, and one logged decision per row."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    means = pd.DataFrame({"none": 1.0, "a": 1.0 + x, "b": 1.5 - x})
    probs = np.c_[np.full(n, 0.2), np.full(n, 0.5), np.full(n, 0.3)]
    choice = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    reward = means.to_numpy()[np.arange(n), choice] + rng.normal(scale=0.5, size=n)
    return means, np.array(ACTIONS)[choice], probs[np.arange(n), choice], reward


def test_policy_value_covers_true_value() -> None:
    means, action, propensity, reward = bandit(20_000, seed=3)
    best = means.idxmax(axis=1)
    true_value = means.max(axis=1).mean()
    # A deliberately wrong reward model: the doubly-robust correction must repair it.
    wrong_model = means * 0 + 1.0
    value = policy_value(
        reward=reward,
        logged_action=action,
        logged_propensity=propensity,
        target=deterministic(best, ACTIONS),
        reward_model=wrong_model,
    )
    assert value.ips_low < true_value < value.ips_high
    assert value.dr_low < true_value < value.dr_high
    # With the right reward model the interval gets narrower.
    good = policy_value(
        reward=reward,
        logged_action=action,
        logged_propensity=propensity,
        target=deterministic(best, ACTIONS),
        reward_model=means,
    )
    assert good.dr_high - good.dr_low < value.dr_high - value.dr_low


def test_policy_value_of_uniform_policy() -> None:
    means, action, propensity, reward = bandit(20_000, seed=4)
    eligible = pd.DataFrame(True, index=means.index, columns=ACTIONS)
    value = policy_value(
        reward=reward,
        logged_action=action,
        logged_propensity=propensity,
        target=uniform(eligible),
        reward_model=means,
    )
    assert abs(value.dr - means.mean(axis=1).mean()) < 0.03


def test_qini_curve_rewards_informative_scores() -> None:
    rng = np.random.default_rng(0)
    n = 10_000
    uplift = rng.uniform(-0.2, 0.4, n)
    treated = rng.random(n) < 0.5
    outcome = (rng.random(n) < 0.3 + uplift * treated).astype(float)
    weight = np.full(n, 2.0)
    informed = auuc(qini_curve(uplift, treated, outcome, weight))
    blind = auuc(qini_curve(rng.random(n), treated, outcome, weight))
    assert informed > 0.02
    assert abs(blind) < informed / 3


def test_ips_terms_average_to_the_ips_value() -> None:
    means, action, propensity, reward = bandit(2_000, seed=5)
    target = deterministic(means.idxmax(axis=1), ACTIONS)
    logged = {"reward": reward, "logged_action": action, "logged_propensity": propensity}
    terms = ips_terms(**logged, target=target)
    value = policy_value(**logged, target=target, reward_model=means)
    assert terms.mean() == pytest.approx(value.ips)


def test_paired_difference_separates_policies_that_unpaired_intervals_cannot() -> None:
    means, action, propensity, reward = bandit(4_000, seed=7)
    # Two policies that differ on a tenth of the rows, where the better one gains 0.5 on average.
    best = means.idxmax(axis=1)
    worse = best.copy()
    flip = np.arange(len(best)) % 10 == 0
    worse[flip] = np.where(best[flip] == "a", "b", "a")
    logged = {"reward": reward, "logged_action": action, "logged_propensity": propensity}
    good_terms = ips_terms(**logged, target=deterministic(best, ACTIONS))
    worse_terms = ips_terms(**logged, target=deterministic(worse, ACTIONS))
    rows = np.arange(len(best))
    columns = pd.Index(ACTIONS)
    true_gain = float(
        (
            means.to_numpy()[rows, columns.get_indexer(best)]
            - means.to_numpy()[rows, columns.get_indexer(worse)]
        ).mean()
    )
    diff = paired_difference(good_terms, worse_terms)
    assert diff.excludes_zero and diff.low > 0
    assert diff.low < true_gain < diff.high
    # Unpaired, the two values' intervals overlap.
    good_half = 1.96 * good_terms.std(ddof=1) / np.sqrt(len(rows))
    worse_half = 1.96 * worse_terms.std(ddof=1) / np.sqrt(len(rows))
    assert good_terms.mean() - good_half < worse_terms.mean() + worse_half
    same = paired_difference(good_terms, good_terms)
    assert (same.mean, same.excludes_zero) == (0.0, False)


def test_paired_difference_needs_the_same_decisions() -> None:
    with pytest.raises(ValueError, match="same decisions"):
        paired_difference(np.ones(3), np.ones(4))

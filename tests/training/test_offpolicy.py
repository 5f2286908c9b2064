"""Off-policy estimates agree with the true value of a policy; Qini ranks good scores higher."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.offpolicy import auuc, deterministic, policy_value, qini_curve, uniform

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

"""Off-policy evaluation and uplift curves on logged randomised decisions.

Pure functions over arrays: the logged action and its propensity, a reward, and the target
policy as a frame of action probabilities (one column per action, rows summing to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class PolicyValue:
    """Mean reward per decision of a target policy, estimated from logged data."""

    ips: float
    ips_low: float
    ips_high: float
    dr: float
    dr_low: float
    dr_high: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}{name}": float(getattr(self, name))
            for name in ("ips", "ips_low", "ips_high", "dr", "dr_low", "dr_high")
        }


def _mean_ci(terms: np.ndarray) -> tuple[float, float, float]:
    mean = float(terms.mean())
    half = Z_95 * float(terms.std(ddof=1)) / np.sqrt(len(terms)) if len(terms) > 1 else np.nan
    return mean, mean - half, mean + half


def policy_value(
    *,
    reward: np.ndarray,
    logged_action: np.ndarray,
    logged_propensity: np.ndarray,
    target: pd.DataFrame,
    reward_model: pd.DataFrame,
) -> PolicyValue:
    """IPS and doubly-robust value of `target`, with normal 95% confidence intervals.

    Args:
        reward: realised reward of each logged decision.
        logged_action: the action the logging policy took.
        logged_propensity: the probability with which it took it.
        target: probability of each action under the evaluated policy (columns = actions).
        reward_model: predicted reward of each action for each decision (same columns), the
            direct-method part of the doubly-robust estimate.
    """
    reward = np.asarray(reward, dtype=float)
    actions = list(target.columns)
    column = pd.Index(actions).get_indexer(pd.Index(np.asarray(logged_action, dtype=object)))
    if (column < 0).any():
        unknown = sorted(set(np.asarray(logged_action)[column < 0]))
        raise ValueError(f"logged actions missing from the target policy: {unknown}")
    rows = np.arange(len(reward))
    probs = target[actions].to_numpy(dtype=float)
    predicted = reward_model[actions].to_numpy(dtype=float)
    weight = probs[rows, column] / np.asarray(logged_propensity, dtype=float)
    ips = _mean_ci(weight * reward)
    direct = (probs * predicted).sum(axis=1)
    dr = _mean_ci(direct + weight * (reward - predicted[rows, column]))
    return PolicyValue(*ips, *dr, n=len(reward))


def ips_terms(
    *,
    reward: np.ndarray,
    logged_action: np.ndarray,
    logged_propensity: np.ndarray,
    target: pd.DataFrame,
) -> np.ndarray:
    """Each decision's term of the IPS value of `target` (their mean is `PolicyValue.ips`).

    Two policies' terms over the same decisions pair up: their difference has a far smaller
    variance than either value, as both share the logged rewards (see `paired_difference`).
    """
    actions = list(target.columns)
    column = pd.Index(actions).get_indexer(pd.Index(np.asarray(logged_action, dtype=object)))
    if (column < 0).any():
        unknown = sorted(set(np.asarray(logged_action)[column < 0]))
        raise ValueError(f"logged actions missing from the target policy: {unknown}")
    probs = target[actions].to_numpy(dtype=float)[np.arange(len(column)), column]
    return probs / np.asarray(logged_propensity, dtype=float) * np.asarray(reward, dtype=float)


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-decision difference of two policies' values on the same decisions, 95% CI."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def paired_difference(terms: np.ndarray, baseline_terms: np.ndarray) -> PairedDifference:
    """`terms` minus `baseline_terms` (per-decision IPS terms of two policies), normal 95% CI."""
    terms, baseline_terms = np.asarray(terms, float), np.asarray(baseline_terms, float)
    if terms.shape != baseline_terms.shape:
        raise ValueError("paired terms must cover the same decisions")
    mean, low, high = _mean_ci(terms - baseline_terms)
    return PairedDifference(mean, low, high, n=len(terms))


def deterministic(choice: pd.Series, actions: list[str]) -> pd.DataFrame:
    """A policy that takes `choice` with probability one, as a probability frame."""
    return pd.DataFrame(
        {a: (choice.to_numpy() == a).astype(float) for a in actions}, index=choice.index
    )


def uniform(eligible: pd.DataFrame) -> pd.DataFrame:
    """The random policy: uniform over each row's eligible actions."""
    mask = eligible.to_numpy(dtype=float)
    return pd.DataFrame(
        mask / mask.sum(axis=1, keepdims=True), index=eligible.index, columns=eligible.columns
    )


def qini_curve(
    score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, weight: np.ndarray
) -> pd.DataFrame:
    """Qini curve of one offer: incremental outcomes when targeting the top fraction by `score`.

    Rows are decisions that took either this offer (`treated`) or `none`; `weight` is the inverse
    logged propensity, so unequal assignment probabilities do not bias the curve.
    """
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    treated = np.asarray(treated, dtype=bool)[order]
    outcome = np.asarray(outcome, dtype=float)[order]
    weight = np.asarray(weight, dtype=float)[order]
    t_weight = np.cumsum(weight * treated)
    c_weight = np.cumsum(weight * ~treated)
    t_outcome = np.cumsum(weight * outcome * treated)
    c_outcome = np.cumsum(weight * outcome * ~treated)
    ratio = np.divide(t_weight, c_weight, out=np.zeros_like(t_weight), where=c_weight > 0)
    qini = t_outcome - c_outcome * ratio
    fraction = np.arange(1, len(order) + 1) / len(order)
    # Per treated unit of the whole population, so offers with unequal traffic compare.
    scale = t_weight[-1] if len(order) and t_weight[-1] > 0 else 1.0
    return pd.DataFrame({"fraction": np.r_[0.0, fraction], "qini": np.r_[0.0, qini / scale]})


def auuc(curve: pd.DataFrame) -> float:
    """Area between the Qini curve and the random-targeting diagonal (positive = better)."""
    x = curve["fraction"].to_numpy()
    y = curve["qini"].to_numpy()
    diagonal = x * y[-1]
    return float(np.trapezoid(y - diagonal, x))

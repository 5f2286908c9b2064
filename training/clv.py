"""Customer lifetime value over the next 365 days: LightGBM regressor and average-based baseline.

**Objective.** `clv_365` is revenue: many customers bring nothing (they churn), the rest are
right-skewed. The default objective is **Tweedie** (variance power 1.5), the compound Poisson-gamma
family made for exactly that mass-at-zero-plus-skew shape; it predicts on a log link, so every
prediction is positive and large spenders do not dominate the fit as they do under L2. `objective=
"regression"` (L2) is available and targets the conditional mean directly. Negative targets (refunds
exceeding purchases) are clipped at 0 for Tweedie, which cannot fit them.

**Baseline.** The textbook average-based CLV: average purchase value x purchase frequency x expected
lifespan, all estimated from the training fold:

- average purchase value: the customer's `revenue_<N>d / n_purchase_<N>d` (the training fold's
  average order value when the customer has no purchase in the window);
- purchase frequency: `n_purchase_<N>d` scaled to a year;
- expected lifespan within the 365-day target: with the training fold's churn rate c per H-day
  label window, a customer survives each window with s = 1 - c, so the expected share of the next
  year spent active is (1 - s^m) / (-m ln s) with m = 365 / H windows (1 when c = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from training.baselines import purchase_count_column
from training.encoding import BoosterMixin, lgb_base_params

TARGET_DAYS = 365


class CLVModel(BoosterMixin, RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """LightGBM regressor of revenue in the next 365 days.

    Args:
        categorical: Names of categorical feature columns.
        objective: "tweedie" (default) or "regression" (L2).
        tweedie_variance_power: Tweedie power in (1, 2).
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        min_child_samples: Fewest rows in a leaf.
        seed: LightGBM seed.
        num_threads: LightGBM threads.

    Attributes:
        booster_: The fitted `lightgbm.Booster`.
        categories_: Category levels per categorical column.
        feature_names_in_: Feature names, in model order.
        n_features_in_: Number of features.
    """

    def __init__(
        self,
        *,
        categorical: Sequence[str] = (),
        objective: str = "tweedie",
        tweedie_variance_power: float = 1.5,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.categorical = categorical
        self.objective = objective
        self.tweedie_variance_power = tweedie_variance_power
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed
        self.num_threads = num_threads

    def fit(self, X: pd.DataFrame, y: object) -> CLVModel:
        """Fit on the training fold.

        Args:
            X: Features (a DataFrame; column order becomes model order).
            y: Revenue in the 365 days after each row's cutoff.

        Returns:
            self.
        """
        if self.objective not in ("tweedie", "regression"):
            raise ValueError(f"objective must be 'tweedie' or 'regression', got {self.objective!r}")
        target = np.asarray(y, dtype=float)
        if self.objective == "tweedie":
            target = np.clip(target, 0.0, None)
        params: dict[str, Any] = {
            "objective": self.objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            **lgb_base_params(seed=self.seed, num_threads=self.num_threads),
        }
        if self.objective == "tweedie":
            params["tweedie_variance_power"] = self.tweedie_variance_power
        self._fit_booster(
            X,
            target,
            categorical=self.categorical,
            params=params,
            num_boost_round=self.n_estimators,
        )
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted revenue in the next 365 days."""
        return np.asarray(self.booster_.predict(self.encode(X)), dtype=float)


def expected_active_share(churn_rate: float, *, horizon_days: int, target_days: int) -> float:
    """Expected share of `target_days` a customer stays active, with geometric survival.

    Args:
        churn_rate: Probability of churning within one `horizon_days` window.
        horizon_days: H, the churn label window.
        target_days: The CLV horizon (365).

    Returns:
        (1 - s^m) / (-m ln s) with s = 1 - churn_rate and m = target_days / horizon_days.
    """
    s = 1.0 - churn_rate
    m = target_days / horizon_days
    if churn_rate <= 0:
        return 1.0
    if s <= 0:
        return 0.0
    return float((1.0 - s**m) / (-m * math.log(s)))


class AverageCLVBaseline(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Average purchase value x purchase frequency x expected lifespan (see the module docstring).

    Args:
        frequency: Purchase-count column, `n_purchase_<N>d`.
        monetary: Revenue column over the same window, `revenue_<N>d`.
        window_days: N, the window of those columns (parsed from the name when None).
        horizon_days: H, the churn label window the churn rate refers to.

    Attributes:
        average_order_value_: Training fold's revenue per purchase.
        churn_rate_: Training fold's churn rate per H days (0 when no labels were given).
        active_share_: Expected share of the next year a customer stays active.
    """

    def __init__(
        self,
        *,
        frequency: str = "n_purchase_365d",
        monetary: str = "revenue_365d",
        window_days: int | None = None,
        horizon_days: int = 90,
    ) -> None:
        self.frequency = frequency
        self.monetary = monetary
        self.window_days = window_days
        self.horizon_days = horizon_days

    def _window(self) -> int:
        if self.window_days is not None:
            return self.window_days
        digits = "".join(ch for ch in self.frequency.rsplit("_", 1)[-1] if ch.isdigit())
        if not digits:
            raise ValueError(f"cannot read the window of {self.frequency!r}; pass window_days")
        return int(digits)

    def _values(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        f = np.nan_to_num(X[self.frequency].to_numpy(dtype=float, na_value=np.nan), nan=0.0)
        m = np.nan_to_num(X[self.monetary].to_numpy(dtype=float, na_value=np.nan), nan=0.0)
        return f, m

    def fit(
        self, X: pd.DataFrame, y: object = None, *, churned: object = None
    ) -> AverageCLVBaseline:
        """Estimate average order value and expected lifespan on the training fold.

        Args:
            X: Training-fold features with the frequency and monetary columns.
            y: Unused (the baseline is not fitted to the target).
            churned: Training-fold churn labels; without them the lifespan factor is 1.

        Returns:
            self.
        """
        f, m = self._values(X)
        self.average_order_value_ = float(m.sum() / f.sum()) if f.sum() > 0 else 0.0
        self.churn_rate_ = (
            float(np.mean(np.asarray(churned, dtype=float))) if churned is not None else 0.0
        )
        self.active_share_ = expected_active_share(
            self.churn_rate_, horizon_days=self.horizon_days, target_days=TARGET_DAYS
        )
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Baseline CLV over the next 365 days."""
        check_is_fitted(self, "active_share_")
        f, m = self._values(X)
        aov = np.where(f > 0, m / np.where(f > 0, f, 1.0), self.average_order_value_)
        per_year = f * TARGET_DAYS / self._window()
        return np.clip(aov * per_year * self.active_share_, 0.0, None)


def clv_baseline_columns(feature_columns: Sequence[str]) -> tuple[str, str]:
    """The (frequency, monetary) columns of the baseline: the longest purchase-count window.

    Args:
        feature_columns: The panel's column names.

    Returns:
        (n_purchase_<N>d or purchases_<N>d, revenue_<N>d) with the largest N present.

    Raises:
        ValueError: If either is missing.
    """
    frequency = purchase_count_column(feature_columns)
    if frequency is None:
        raise ValueError("the CLV baseline needs an n_purchase_<N>d (or purchases_<N>d) column")
    monetary = "revenue_" + frequency.rsplit("_", 1)[-1]
    if monetary not in feature_columns:
        raise ValueError(f"the CLV baseline needs {monetary} next to {frequency}")
    return frequency, monetary

"""Uplift: the effect of each offer, per customer, learnt from logged randomised decisions.

Two meta-learners over several treatments, both using the logged propensities:

- `DRLearner`: outcome models per action (cross-fitted), then a doubly-robust pseudo-outcome per
  action against `none`, regressed on the features. Unbiased where the outcome models are wrong,
  because the logged propensities are exact.
- `TLearner`: one outcome model per action, inverse-propensity weighted; the effect is the
  difference of predictions. Simple and a fair baseline.

- `SLearner`: one inverse-propensity-weighted outcome model with the action as a categorical
  feature; the effect is the prediction under each offer minus under `none`. Sharing the outcome
  structure across actions makes it the most data-efficient where effects are small and live in
  small groups (on the demo world it tracks the true effects best).

All take a feature frame, the logged action (`none` = control), its propensity and an outcome,
and predict a frame of effects with one column per offer.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from features.contract import NO_OFFER

# Effects are small next to outcome noise: shallow, heavily regularised trees keep the learners
# from fitting noise (on the demo world, 15-leaf trees turned noise into confident effects).
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 120,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 400,
    "reg_lambda": 10.0,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.6,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}


def _regressor(params: dict[str, Any], seed: int) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(**(DEFAULT_PARAMS | params), random_state=seed)


class _MetaLearner(BaseEstimator):  # type: ignore[misc]
    """Shared contract: parameters in `__init__`, learned state ends in `_`."""

    def __init__(
        self,
        *,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        num_threads: int = 0,
        min_rows_per_action: int = 50,
    ) -> None:
        self.params = params
        self.seed = seed
        self.num_threads = num_threads
        self.min_rows_per_action = min_rows_per_action

    def _lgb_params(self) -> dict[str, Any]:
        return (self.params or {}) | {"n_jobs": self.num_threads or None}

    def _offers(self, action: np.ndarray) -> list[str]:
        counts = pd.Series(action).value_counts()
        if counts.get(NO_OFFER, 0) < self.min_rows_per_action:
            raise ValueError(
                f"uplift needs at least {self.min_rows_per_action} logged control decisions "
                f"(offer_id '{NO_OFFER}'); found {counts.get(NO_OFFER, 0)}"
            )
        return sorted(
            str(a) for a, n in counts.items() if a != NO_OFFER and n >= self.min_rows_per_action
        )

    def predict_effects(self, features: pd.DataFrame) -> pd.DataFrame:
        """Effect of each offer against `none`, one column per offer."""
        raise NotImplementedError


class TLearner(_MetaLearner):
    """One inverse-propensity-weighted outcome model per action; effect = difference."""

    def fit(
        self,
        features: pd.DataFrame,
        action: np.ndarray,
        propensity: np.ndarray,
        outcome: np.ndarray,
    ) -> TLearner:
        action = np.asarray(action, dtype=object)
        self.offers_ = self._offers(action)
        self.models_: dict[str, lgb.LGBMRegressor] = {}
        for arm in [NO_OFFER, *self.offers_]:
            rows = action == arm
            model = _regressor(self._lgb_params(), self.seed)
            model.fit(features[rows], outcome[rows], sample_weight=1.0 / propensity[rows])
            self.models_[arm] = model
        return self

    def predict_outcomes(self, features: pd.DataFrame) -> pd.DataFrame:
        """Expected outcome under each action (including `none`)."""
        check_is_fitted(self, "models_")
        return pd.DataFrame(
            {arm: model.predict(features) for arm, model in self.models_.items()},
            index=features.index,
        )

    def predict_effects(self, features: pd.DataFrame) -> pd.DataFrame:
        outcomes = self.predict_outcomes(features)
        return outcomes[self.offers_].sub(outcomes[NO_OFFER], axis=0)


class DRLearner(_MetaLearner):
    """Doubly-robust learner: cross-fitted outcome models, DR pseudo-outcomes, effect models."""

    def __init__(
        self,
        *,
        params: dict[str, Any] | None = None,
        seed: int = 0,
        num_threads: int = 0,
        min_rows_per_action: int = 50,
        folds: int = 2,
        clip_propensity: float = 0.01,
    ) -> None:
        super().__init__(
            params=params,
            seed=seed,
            num_threads=num_threads,
            min_rows_per_action=min_rows_per_action,
        )
        self.folds = folds
        self.clip_propensity = clip_propensity

    def fit(
        self,
        features: pd.DataFrame,
        action: np.ndarray,
        propensity: np.ndarray,
        outcome: np.ndarray,
    ) -> DRLearner:
        action = np.asarray(action, dtype=object)
        outcome = np.asarray(outcome, dtype=float)
        weight = 1.0 / np.clip(np.asarray(propensity, dtype=float), self.clip_propensity, 1.0)
        self.offers_ = self._offers(action)
        arms = [NO_OFFER, *self.offers_]

        # Cross-fitting: each row's outcome predictions come from models that never saw it,
        # so the pseudo-outcomes carry no overfitting bias.
        fold = np.random.default_rng(self.seed).integers(0, self.folds, len(features))
        mu = np.zeros((len(features), len(arms)))
        for k in range(self.folds):
            train, held = fold != k, fold == k
            for j, arm in enumerate(arms):
                rows = train & (action == arm)
                model = _regressor(self._lgb_params(), self.seed + k)
                model.fit(features[rows], outcome[rows])
                mu[held, j] = model.predict(features[held])

        control_residual = (action == NO_OFFER) * weight * (outcome - mu[:, 0])
        self.models_: dict[str, lgb.LGBMRegressor] = {}
        for j, arm in enumerate(self.offers_, start=1):
            treated_residual = (action == arm) * weight * (outcome - mu[:, j])
            pseudo = mu[:, j] - mu[:, 0] + treated_residual - control_residual
            model = _regressor(self._lgb_params(), self.seed)
            model.fit(features, pseudo)
            self.models_[arm] = model
        return self

    def predict_effects(self, features: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "models_")
        return pd.DataFrame(
            {arm: model.predict(features) for arm, model in self.models_.items()},
            index=features.index,
        )


class SLearner(_MetaLearner):
    """One outcome model over features + action; effect = prediction(offer) − prediction(none)."""

    def fit(
        self,
        features: pd.DataFrame,
        action: np.ndarray,
        propensity: np.ndarray,
        outcome: np.ndarray,
    ) -> SLearner:
        action = np.asarray(action, dtype=object)
        self.offers_ = self._offers(action)
        self.arms_ = [NO_OFFER, *self.offers_]
        rows = np.isin(action, self.arms_)
        codes = pd.Categorical(action[rows], categories=self.arms_).codes
        # Every tree sees every feature, so the action can meet the features it interacts with.
        params = self._lgb_params() | {
            "num_leaves": 15,
            "min_child_samples": 100,
            "n_estimators": 300,
            "reg_lambda": 0.0,
            "colsample_bytree": 1.0,
        }
        self.model_ = lgb.LGBMRegressor(**(DEFAULT_PARAMS | params), random_state=self.seed)
        self.model_.fit(
            features[rows].assign(action=codes),
            np.asarray(outcome, dtype=float)[rows],
            sample_weight=1.0 / np.asarray(propensity, dtype=float)[rows],
            categorical_feature=["action"],
        )
        return self

    def predict_effects(self, features: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "model_")
        base = np.asarray(self.model_.predict(features.assign(action=0)))
        effects = {
            arm: np.asarray(self.model_.predict(features.assign(action=code))) - base
            for code, arm in enumerate(self.arms_)
            if arm != NO_OFFER
        }
        return pd.DataFrame(effects, index=features.index)

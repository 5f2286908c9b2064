"""The churn-risk model: LightGBM with isotonic calibration, as one scikit-learn estimator.

The booster is fitted on the training fold only; the isotonic calibrator maps its raw probabilities
to calibrated ones and is fitted on the later calibration fold, never on rows the booster saw (a
booster's in-sample probabilities are over-confident, so calibrating on them would undo little).
The calibrator is *centred* isotonic regression: plain isotonic regression is a step function whose
flat steps tie hundreds of customers the booster had ranked apart (that cost the demo world's
PR-AUC 0.02-0.03); joining the steps' centres by straight lines keeps the fit monotone and as well
calibrated, and keeps the booster's order.
Serving can score with `booster_` and `calibrator_` directly; `predict_proba` does exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

from training.encoding import BoosterMixin, lgb_base_params

TUNABLE = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "reg_lambda")


class CenteredIsotonicRegression(IsotonicRegression):  # type: ignore[misc]
    """Isotonic regression whose steps are joined at their centres: strictly increasing between
    the first and last step (flat only beyond them), so it breaks no ties the scores did not have.

    Each step (a run of equal fitted values) becomes one point: the weighted mean of its inputs and
    its fitted value; `X_min_` and `X_max_` keep the first and last values. `predict` and the
    fitted interpolant `f_` (what serving calls) both use these points.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CenteredIsotonicRegression:
        super().fit(X, y, sample_weight)
        x = np.asarray(X, dtype=float).ravel()
        w = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        order = np.argsort(x, kind="stable")
        x, w = x[order], w[order]
        fitted = np.asarray(super().predict(x), dtype=float)
        starts = np.flatnonzero(np.r_[True, fitted[1:] != fitted[:-1]])
        weight = np.add.reduceat(w, starts)
        centres = np.add.reduceat(x * w, starts) / weight
        values = fitted[starts]
        xs = np.r_[self.X_min_, centres, self.X_max_]
        ys = np.r_[values[0], values, values[-1]]
        keep = np.r_[True, np.diff(xs) > 0]  # a step at an end already sits there
        self.X_thresholds_, self.y_thresholds_ = xs[keep], ys[keep]
        self._build_f(self.X_thresholds_, self.y_thresholds_)
        return self


class ChurnModel(BoosterMixin, ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Calibrated LightGBM churn classifier.

    Args:
        categorical: Names of categorical feature columns (strings or pandas categories).
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        min_child_samples: Fewest rows in a leaf.
        reg_lambda: L2 regularisation on leaf values.
        feature_fraction: Share of features tried per tree (below 1.0 the seed picks them).
        seed: Random seed for LightGBM.
        num_threads: LightGBM threads; results are reproducible for a fixed value.

    Attributes:
        booster_: The fitted `lightgbm.Booster` (uncalibrated probabilities).
        calibrator_: The fitted `IsotonicRegression` (raw probability -> calibrated), bounded to
            [1 / (n + 2), 1 - 1 / (n + 2)] for a calibration fold of n rows.
        categories_: Category levels learned from the training fold, per categorical column.
        feature_names_in_: Feature names, in model order.
        n_features_in_: Number of features.
        classes_: `[0, 1]`.
    """

    def __init__(
        self,
        *,
        categorical: Sequence[str] = (),
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        reg_lambda: float = 0.0,
        feature_fraction: float = 1.0,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.categorical = categorical
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.feature_fraction = feature_fraction
        self.seed = seed
        self.num_threads = num_threads

    def _lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "feature_fraction": self.feature_fraction,
            **lgb_base_params(seed=self.seed, num_threads=self.num_threads),
        }

    def fit(
        self,
        X: pd.DataFrame,
        y: object,
        *,
        X_calib: pd.DataFrame | None = None,
        y_calib: object = None,
    ) -> ChurnModel:
        """Fit the booster on (X, y) and the calibrator on (X_calib, y_calib).

        Args:
            X: Training-fold features (a DataFrame; column order becomes model order).
            y: Training-fold labels, 0/1.
            X_calib: Calibration-fold features (later cutoff, same columns).
            y_calib: Calibration-fold labels.

        Returns:
            self.

        Raises:
            ValueError: If the calibration fold is missing or holds a single class.
        """
        if X_calib is None or y_calib is None:
            raise ValueError(
                "ChurnModel.fit needs X_calib and y_calib: the calibrator is fitted on a later "
                "fold, never on the booster's own training rows"
            )
        y_train = np.asarray(y, dtype=float)
        y_cal = np.asarray(y_calib, dtype=float)
        if np.unique(y_cal).size < 2:
            raise ValueError("the calibration fold holds a single class; cannot calibrate")
        self.classes_ = np.array([0, 1])
        self._fit_booster(
            X,
            y_train,
            categorical=self.categorical,
            params=self._lgb_params(),
            num_boost_round=self.n_estimators,
        )
        raw_cal = self.booster_.predict(self.encode(X_calib))
        # A calibration bin without a churner would say "0%": no finite fold supports that, so
        # probabilities stay within 1 / (n + 2) of 0 and 1 (Laplace's rule for an empty bin).
        floor = 1.0 / (y_cal.size + 2)
        self.calibrator_ = CenteredIsotonicRegression(
            y_min=floor, y_max=1.0 - floor, out_of_bounds="clip"
        ).fit(raw_cal, y_cal)
        return self

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated booster probabilities of churn."""
        check_is_fitted(self, "booster_")
        return np.asarray(self.booster_.predict(self.encode(X)), dtype=float)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Map raw booster probabilities to calibrated ones."""
        check_is_fitted(self, "calibrator_")
        return np.asarray(self.calibrator_.predict(np.asarray(raw, dtype=float)), dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2): column 1 is P(churn)."""
        p = self.calibrate(self.predict_raw(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Labels at a 0.5 threshold on the calibrated probability (sklearn contract)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def tune_churn_params(
    X_train: pd.DataFrame,
    y_train: object,
    X_valid: pd.DataFrame,
    y_valid: object,
    *,
    categorical: Sequence[str],
    n_trials: int,
    seed: int = 0,
    num_threads: int = 1,
    base_params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Search LightGBM hyperparameters with Optuna, maximising validation ROC-AUC.

    The validation fold is the calibration fold: the test fold is never looked at. ROC-AUC is the
    objective because ranking is what the calibrator cannot repair afterwards.

    Args:
        X_train: Training-fold features.
        y_train: Training-fold labels.
        X_valid: Validation-fold features.
        y_valid: Validation-fold labels.
        categorical: Categorical feature names.
        n_trials: Number of Optuna trials.
        seed: Seed of the sampler and of every fit.
        num_threads: LightGBM threads.
        base_params: Fixed `ChurnModel` parameters the search starts from.

    Returns:
        The best `ChurnModel` parameters among `TUNABLE` merged over `base_params`.

    Raises:
        ImportError: If optuna is not installed (extra `tune`).
    """
    import optuna
    from sklearn.metrics import roc_auc_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed = dict(base_params or {})
    y_tr = np.asarray(y_train, dtype=float)
    y_va = np.asarray(y_valid, dtype=float)

    def objective(trial: optuna.Trial) -> float:
        params = {
            **fixed,
            "n_estimators": trial.suggest_int("n_estimators", 50, 600, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }
        model = ChurnModel(categorical=categorical, seed=seed, num_threads=num_threads)
        model.set_params(**params)
        # Isotonic calibration is monotone but flattens ties, so selection uses the raw booster.
        model.fit(X_train, y_tr, X_calib=X_valid, y_calib=y_va)
        return float(roc_auc_score(y_va, model.predict_raw(X_valid)))

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    return {**fixed, **study.best_params}

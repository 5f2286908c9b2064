"""Churn baselines the model must beat in every run: an RFM heuristic and a logistic regression.

- **RFM**: recency, frequency and monetary value are each cut into quintiles learned on the training
  fold (1 = lowest risk ... 5 = highest: long since the last purchase, few purchases, little spend),
  summed to a score 3..15, and the score is mapped to a probability by isotonic regression on the
  calibration fold, the same fold that calibrates the model.
- **Logistic regression**: numeric features median-imputed (with missing-value indicators) and
  standardised, categoricals one-hot encoded (unknown levels ignored); fitted on the training fold
  only. Its probabilities are left as the likelihood fit makes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

_MISSING = "(missing)"


def longest_window(columns: Sequence[str], prefix: str) -> str | None:
    """The `<prefix>_<N>d` column with the largest N, or None."""
    pattern = re.compile(rf"^{prefix}_(\d+)d$")
    windows = [(int(m.group(1)), c) for c in columns if (m := pattern.match(c))]
    return max(windows)[1] if windows else None


def purchase_count_column(columns: Sequence[str]) -> str | None:
    """The purchase-count column with the longest window: `n_purchase_<N>d` or `purchases_<N>d`."""
    return longest_window(columns, "n_purchase") or longest_window(columns, "purchases")


def rfm_columns(feature_columns: Sequence[str]) -> tuple[str, str, str]:
    """Pick the recency, frequency and monetary columns from a feature set.

    Recency is `days_since_last_purchase` (else `days_since_last_event`); frequency and monetary
    are `n_purchase_<N>d` (or `purchases_<N>d`) and `revenue_<N>d` with the longest window N.

    Args:
        feature_columns: The feature set's column names.

    Returns:
        (recency, frequency, monetary) column names.

    Raises:
        ValueError: If one of the three cannot be found.
    """
    recency = next(
        (c for c in ("days_since_last_purchase", "days_since_last_event") if c in feature_columns),
        None,
    )
    frequency = purchase_count_column(feature_columns)
    monetary = longest_window(feature_columns, "revenue")
    if recency is None or frequency is None or monetary is None:
        raise ValueError(
            "the RFM baseline needs days_since_last_purchase (or days_since_last_event), "
            f"n_purchase_<N>d and revenue_<N>d; found recency={recency}, "
            f"frequency={frequency}, monetary={monetary}"
        )
    return recency, frequency, monetary


def _quintile(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right") + 1


class RFMBaseline(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Recency / frequency / monetary quintile score, calibrated to a churn probability.

    Args:
        recency: Column with days since the last purchase (missing = never: highest risk).
        frequency: Column with the purchase count in a window (missing = 0).
        monetary: Column with revenue in a window (missing = 0).

    Attributes:
        edges_: Quintile edges per column, learned on the training fold.
        calibrator_: Isotonic map from score (3..15) to probability, fitted on the calibration fold.
        classes_: `[0, 1]`.
    """

    def __init__(self, *, recency: str, frequency: str, monetary: str) -> None:
        self.recency = recency
        self.frequency = frequency
        self.monetary = monetary

    def _values(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = X[self.recency].to_numpy(dtype=float, na_value=np.nan)
        f = X[self.frequency].to_numpy(dtype=float, na_value=np.nan)
        m = X[self.monetary].to_numpy(dtype=float, na_value=np.nan)
        r = np.where(np.isnan(r), np.inf, r)
        return r, np.nan_to_num(f, nan=0.0), np.nan_to_num(m, nan=0.0)

    def risk_score(self, X: pd.DataFrame) -> np.ndarray:
        """RFM risk score 3..15; higher means more likely to churn."""
        check_is_fitted(self, "edges_")
        r, f, m = self._values(X)
        risk_r = _quintile(r, self.edges_["recency"])
        risk_f = 6 - _quintile(f, self.edges_["frequency"])
        risk_m = 6 - _quintile(m, self.edges_["monetary"])
        return (risk_r + risk_f + risk_m).astype(float)

    def fit(
        self,
        X: pd.DataFrame,
        y: object,
        *,
        X_calib: pd.DataFrame | None = None,
        y_calib: object = None,
    ) -> RFMBaseline:
        """Learn quintile edges on (X, y) and the score-to-probability map on the calibration fold.

        Args:
            X: Training-fold features.
            y: Training-fold labels (unused beyond the interface: quintiles need no labels).
            X_calib: Calibration-fold features.
            y_calib: Calibration-fold labels.

        Returns:
            self.
        """
        if X_calib is None or y_calib is None:
            raise ValueError("RFMBaseline.fit needs X_calib and y_calib")
        r, f, m = self._values(X)
        qs = [0.2, 0.4, 0.6, 0.8]
        finite_r = r[np.isfinite(r)]
        self.edges_ = {
            "recency": np.quantile(finite_r, qs) if finite_r.size else np.zeros(4),
            "frequency": np.quantile(f, qs),
            "monetary": np.quantile(m, qs),
        }
        self.classes_ = np.array([0, 1])
        y_cal = np.asarray(y_calib, dtype=float)
        floor = 1.0 / (y_cal.size + 2)  # as ChurnModel: never exactly 0 or 1
        self.calibrator_ = IsotonicRegression(
            y_min=floor, y_max=1.0 - floor, out_of_bounds="clip"
        ).fit(self.risk_score(X_calib), y_cal)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2)."""
        p = np.asarray(self.calibrator_.predict(self.risk_score(X)), dtype=float)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Labels at 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _as_model_frame(X: pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    out = {}
    for column in X.columns:
        if column in categorical:
            text = X[column].astype("string").fillna(_MISSING)
            out[column] = text.to_numpy(dtype=object)
        else:
            out[column] = pd.to_numeric(X[column], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
    return pd.DataFrame(out, index=X.index)


def logistic_baseline(
    feature_columns: Sequence[str], categorical: Sequence[str], *, seed: int = 0
) -> Pipeline:
    """An unfitted logistic-regression pipeline over the feature frame.

    Args:
        feature_columns: Feature names (the pipeline selects these columns).
        categorical: Which of them are categorical.
        seed: Random state of the solver.

    Returns:
        A `Pipeline` with `fit(X, y)` / `predict_proba(X)` on the raw feature frame.
    """
    categorical = [c for c in feature_columns if c in categorical]
    numeric = [c for c in feature_columns if c not in categorical]
    columns = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline(
        [
            (
                "frame",
                FunctionTransformer(
                    _as_model_frame,
                    kw_args={"categorical": list(categorical)},
                    feature_names_out="one-to-one",
                ),
            ),
            ("columns", columns),
            ("model", LogisticRegression(max_iter=2000, random_state=seed)),
        ]
    )

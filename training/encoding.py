"""Turning a feature frame into the float matrix LightGBM sees, identically in training and serving.

Categorical columns become integer codes against the categories learned at fit time (an unseen or
missing value becomes NaN, which LightGBM treats as missing); every other column becomes float64.
Working on a plain matrix rather than a pandas frame keeps the serving hot path free of pandas
dtype surprises (pandas 3 string columns, nullable integers) and lets serving call the booster
directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

BIAS = "bias"


def categorical_columns(
    X: pd.DataFrame, feature_columns: Sequence[str], categorical: Sequence[str] = ()
) -> list[str]:
    """The declared categorical features plus every feature whose dtype is not numeric or bool.

    A feature set's extra static attributes (e.g. a customers column `acquisition_channel`) arrive
    as strings without being declared categorical; they are treated as categories, not failed on.

    Args:
        X: A frame holding the features.
        feature_columns: Feature names, in model order.
        categorical: Declared categorical names.

    Returns:
        Categorical feature names, in model order.
    """
    out = []
    for column in feature_columns:
        dtype = X[column].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        if column in categorical or not numeric:
            out.append(column)
    return out


def learn_categories(X: pd.DataFrame, categorical: Sequence[str]) -> dict[str, list[str]]:
    """Sorted distinct non-missing values of each categorical column, as strings.

    Args:
        X: Training features.
        categorical: Names of the categorical columns.

    Returns:
        Column name -> ordered list of categories; a value's code is its position.
    """
    categories: dict[str, list[str]] = {}
    for column in categorical:
        values = X[column].astype("string").dropna().unique()
        categories[column] = sorted(str(v) for v in values)
    return categories


def encode_frame(
    X: pd.DataFrame, columns: Sequence[str], categories: dict[str, list[str]]
) -> np.ndarray:
    """Encode `X[columns]` as a float64 matrix (categoricals as codes, unknown -> NaN).

    Args:
        X: Features; must hold every name in `columns` (extra columns are ignored).
        columns: Feature names, in model order.
        categories: From `learn_categories`.

    Returns:
        Array of shape (len(X), len(columns)).

    Raises:
        ValueError: If a column is missing.
    """
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(f"missing feature columns: {', '.join(missing)}")
    out = np.empty((len(X), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        series = X[column]
        if column in categories:
            # get_indexer gives -1 for unseen and missing values alike: both become NaN.
            known = pd.Index(categories[column], dtype=object)
            codes = known.get_indexer(pd.Index(series.astype("string")))
            out[:, j] = np.where(codes < 0, np.nan, codes)
        elif series.dtype == object:
            out[:, j] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
        else:
            out[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def lgb_base_params(*, seed: int, num_threads: int) -> dict[str, Any]:
    """LightGBM settings that make a fit reproducible bit for bit on the same thread count."""
    return {
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
    }


class BoosterMixin:
    """Shared state and helpers of the LightGBM estimators (`ChurnModel`, `CLVModel`).

    Subclasses call `_fit_booster` in `fit`; the mixin then provides `encode`, `contributions`
    and `feature_importance` against `booster_`, `categories_` and `feature_names_in_`.
    """

    booster_: lgb.Booster
    categories_: dict[str, list[str]]
    feature_names_in_: np.ndarray
    n_features_in_: int

    def _fit_booster(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        categorical: Sequence[str],
        params: dict[str, Any],
        num_boost_round: int,
    ) -> None:
        columns = [str(c) for c in X.columns]
        unknown = [c for c in categorical if c not in columns]
        if unknown:
            raise ValueError(f"categorical columns not among the features: {', '.join(unknown)}")
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(columns)
        self.categories_ = learn_categories(X, categorical)
        dataset = lgb.Dataset(
            encode_frame(X, columns, self.categories_),
            label=y,
            feature_name=columns,
            categorical_feature=[columns.index(c) for c in categorical],
            free_raw_data=True,
        )
        self.booster_ = lgb.train(params, dataset, num_boost_round=num_boost_round)

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """The float matrix the booster scores (categoricals as learned codes)."""
        check_is_fitted(self, "booster_")
        return encode_frame(X, list(self.feature_names_in_), self.categories_)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row feature contributions (TreeSHAP via LightGBM `pred_contrib`).

        Contributions are in the booster's raw space (log-odds for churn, log-revenue for a
        Tweedie CLV model); a row's values plus `bias` sum to its raw score. For churn, positive
        values push towards churn.

        Args:
            X: Features.

        Returns:
            Frame aligned with X: one column per feature plus `bias`.
        """
        values = self.booster_.predict(self.encode(X), pred_contrib=True)
        columns = [*self.feature_names_in_, BIAS]
        return pd.DataFrame(np.asarray(values), index=X.index, columns=columns)

    def feature_importance(self, importance_type: str = "gain") -> pd.Series:
        """Booster feature importance ("gain" or "split"), sorted descending."""
        check_is_fitted(self, "booster_")
        values = self.booster_.feature_importance(importance_type=importance_type)
        series = pd.Series(values, index=list(self.feature_names_in_), dtype=float)
        return series.sort_values(ascending=False)

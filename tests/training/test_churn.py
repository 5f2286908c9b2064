from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import CATEGORICAL, FEATURES, true_churn_logit
from sklearn.exceptions import NotFittedError
from sklearn.isotonic import IsotonicRegression

from training.churn import TUNABLE, CenteredIsotonicRegression, ChurnModel, tune_churn_params
from training.pipeline import ChurnEvaluation, evaluate_churn
from training.split import split_panel, time_split

SMALL = {"n_estimators": 150, "num_leaves": 15}


@pytest.fixture(scope="module")
def evaluation(panel: pd.DataFrame) -> ChurnEvaluation:
    return evaluate_churn(
        panel,
        feature_columns=FEATURES,
        categorical=CATEGORICAL,
        feature_set="churn_features:test",
        params=SMALL,
    )


@pytest.fixture(scope="module")
def folds(panel: pd.DataFrame):  # type: ignore[no-untyped-def]
    return split_panel(panel, time_split(panel["cutoff"], horizon_days=90))


def _ece_against_truth(p_true: np.ndarray, p_hat: np.ndarray, n_bins: int = 10) -> float:
    """ECE with the true probability in place of the noisy 0/1 label."""
    order = np.argsort(p_hat, kind="stable")
    bins = np.empty(p_hat.size, dtype=int)
    bins[order] = np.arange(p_hat.size) * n_bins // p_hat.size
    gap = np.bincount(bins, weights=p_true) - np.bincount(bins, weights=p_hat)
    return float(np.abs(gap).sum() / p_hat.size)


def test_fit_churn_model_beats_baselines_on_nonlinear_signal(evaluation: ChurnEvaluation) -> None:
    auc = evaluation.metrics["roc_auc"]
    pr_auc = evaluation.metrics["pr_auc"]

    assert auc["model"] > auc["logistic"] + 0.05
    assert auc["model"] > auc["rfm"] + 0.10
    assert pr_auc["model"] > max(pr_auc["logistic"], pr_auc["rfm"])
    assert evaluation.metrics.loc["model", "lift_top_decile"] > 1.8


def test_fit_churn_model_probabilities_close_to_truth(evaluation: ChurnEvaluation, folds) -> None:  # type: ignore[no-untyped-def]
    p_true = 1 / (1 + np.exp(-true_churn_logit(folds.test)))
    p_hat = evaluation.model.predict_proba(folds.test[FEATURES])[:, 1]

    assert _ece_against_truth(p_true, p_hat) < 0.05
    assert evaluation.metrics.loc["model", "ece"] < 0.08  # against labels: noisier


def test_calibrate_overfit_booster_reduces_calibration_error(folds) -> None:  # type: ignore[no-untyped-def]
    overfit = ChurnModel(
        categorical=CATEGORICAL,
        n_estimators=300,
        learning_rate=0.3,
        num_leaves=63,
        min_child_samples=2,
    )
    train, cal, test = folds.train, folds.calibration, folds.test
    overfit.fit(train[FEATURES], train["churned"], X_calib=cal[FEATURES], y_calib=cal["churned"])
    p_true = 1 / (1 + np.exp(-true_churn_logit(test)))

    raw = _ece_against_truth(p_true, overfit.predict_raw(test[FEATURES]))
    calibrated = _ece_against_truth(p_true, overfit.predict_proba(test[FEATURES])[:, 1])

    assert raw > 0.10
    assert calibrated < raw / 2


def test_calibrate_centred_isotonic_keeps_order_and_calibration() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 1.0, 5_000)
    y = (rng.random(raw.size) < raw**2).astype(float)  # raw over-states risk
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    centred = CenteredIsotonicRegression(out_of_bounds="clip").fit(raw, y)
    first, last = centred.X_thresholds_[1], centred.X_thresholds_[-2]  # the outer steps' centres
    inside = np.sort(rng.uniform(first, last, 2_000))

    p = centred.predict(inside)

    assert np.all(np.diff(p) > 0)  # no ties where the scores had none ...
    assert np.unique(plain.predict(inside)).size < 0.2 * inside.size  # ... unlike the steps
    assert np.abs(p - inside**2).max() < 0.06
    assert centred.predict(raw).mean() == pytest.approx(y.mean(), abs=0.01)
    clipped = np.clip(inside, centred.X_min_, centred.X_max_)
    np.testing.assert_array_equal(centred.f_(clipped), p)  # the serving hot path


def test_predict_proba_never_exactly_zero_or_one(evaluation: ChurnEvaluation, folds) -> None:  # type: ignore[no-untyped-def]
    p = evaluation.model.predict_proba(folds.test[FEATURES])[:, 1]
    floor = 1 / (len(folds.calibration) + 2)

    assert p.min() >= floor - 1e-12
    assert p.max() <= 1 - floor + 1e-12
    np.testing.assert_allclose(evaluation.model.predict_proba(folds.test[FEATURES]).sum(axis=1), 1)


def test_fit_churn_model_is_deterministic(folds) -> None:  # type: ignore[no-untyped-def]
    train, cal, test = folds.train, folds.calibration, folds.test

    def fit() -> np.ndarray:
        model = ChurnModel(categorical=CATEGORICAL, n_estimators=30, seed=7, num_threads=1)
        model.fit(train[FEATURES], train["churned"], X_calib=cal[FEATURES], y_calib=cal["churned"])
        return model.predict_proba(test[FEATURES])

    np.testing.assert_array_equal(fit(), fit())


def test_fit_churn_model_without_calibration_fold_raises(folds) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="X_calib"):
        ChurnModel().fit(folds.train[FEATURES], folds.train["churned"])


def test_predict_proba_unfitted_raises() -> None:
    with pytest.raises(NotFittedError):
        ChurnModel().predict_proba(pd.DataFrame({"x": [1.0]}))


def test_compute_contributions_sum_to_raw_log_odds(evaluation: ChurnEvaluation, folds) -> None:  # type: ignore[no-untyped-def]
    X = folds.test[FEATURES].head(50)

    contributions = evaluation.model.contributions(X)
    raw = evaluation.model.predict_raw(X)

    assert list(contributions.columns) == [*FEATURES, "bias"]
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(raw / (1 - raw)), atol=1e-6)


def test_encode_unseen_category_as_missing(evaluation: ChurnEvaluation, folds) -> None:  # type: ignore[no-untyped-def]
    X = folds.test[FEATURES].head(3).copy()
    X["segment"] = pd.array(["business", "martian", None], dtype="str")

    encoded = evaluation.model.encode(X)
    column = FEATURES.index("segment")

    assert encoded[0, column] == evaluation.model.categories_["segment"].index("business")
    assert np.isnan(encoded[1:, column]).all()
    probabilities = evaluation.model.predict_proba(X)[:, 1]
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_tune_churn_params_returns_tunable_params(folds) -> None:  # type: ignore[no-untyped-def]
    train, cal = folds.train.head(2000), folds.calibration

    best = tune_churn_params(
        train[FEATURES],
        train["churned"],
        cal[FEATURES],
        cal["churned"],
        categorical=CATEGORICAL,
        n_trials=2,
        base_params={"feature_fraction": 0.9},
    )

    assert set(TUNABLE) <= set(best)
    assert best["feature_fraction"] == 0.9
    ChurnModel().set_params(**best)  # every key is a real parameter


def test_build_churn_report_lists_models_groups_and_figures(evaluation: ChurnEvaluation) -> None:
    report = evaluation.report

    for model in ("model", "rfm", "logistic"):
        assert f"| {model} |" in report
    for figure in evaluation.figures:
        assert f"]({figure})" in report
    assert "| language | fr |" in report
    assert "test cutoff 2024-04-01" in report
    assert "## Margin over the baselines" in report
    assert "| logistic | roc_auc |" in report


def test_compute_margins_over_baselines_clear_on_nonlinear_signal(
    evaluation: ChurnEvaluation,
) -> None:
    margins = evaluation.margins.set_index(["baseline_name", "metric"])
    metrics = evaluation.metrics

    assert set(margins.index) == {
        (name, metric) for name in ("logistic", "rfm") for metric in ("roc_auc", "pr_auc")
    }
    for name in ("logistic", "rfm"):
        difference = metrics.loc["model", "roc_auc"] - metrics.loc[name, "roc_auc"]
        assert margins.loc[(name, "roc_auc"), "difference"] == pytest.approx(difference)
    assert (margins["ci_low"] < margins["difference"]).all()
    assert (margins["difference"] < margins["ci_high"]).all()
    assert margins.loc[("logistic", "roc_auc"), "clear"]  # the signal is built of interactions

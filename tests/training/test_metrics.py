from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from training.metrics import (
    binary_metrics,
    calibration_table,
    expected_calibration_error,
    group_metrics,
    lift_by_decile,
    margin_over_baselines,
    paired_bootstrap,
    regression_metrics,
    top_decile_lift,
    weighted_ranking_metrics,
)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_compute_ece_calibrated_predictor_near_zero(strategy: str) -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, size=100_000)
    y = rng.random(p.size) < p

    assert expected_calibration_error(y, p, strategy=strategy) < 0.01  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_compute_ece_miscalibrated_predictor_large(strategy: str) -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 1.0, size=100_000)
    y = rng.random(p.size) < p
    underestimate = p**3  # E|p - p^3| = 1/4

    ece = expected_calibration_error(y, underestimate, strategy=strategy)  # type: ignore[arg-type]

    assert ece == pytest.approx(0.25, abs=0.02)


def test_compute_ece_hand_example_uniform_bins() -> None:
    # Two occupied bins of 2 rows: [0.1, 0.1] with labels [0, 1] (gap 0.4), [0.9, 0.9] with [1, 1]
    # (gap 0.1): ECE = 0.5 * 0.4 + 0.5 * 0.1.
    ece = expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], strategy="uniform")

    assert ece == pytest.approx(0.25)


def test_compute_calibration_table_bins_hold_equal_counts() -> None:
    p = np.linspace(0, 1, 100)

    table = calibration_table(np.zeros(100), p, n_bins=10)

    assert table["n"].tolist() == [10] * 10
    assert table["mean_predicted"].is_monotonic_increasing


def test_compute_lift_and_capture_known_example() -> None:
    # 20 rows, 4 churners; the top decile (2 rows) holds 2 of them: rate 1.0 vs 0.2 overall.
    scores = np.arange(20, 0, -1) / 20
    labels = np.zeros(20)
    labels[[0, 1, 10, 15]] = 1

    lift, capture = top_decile_lift(labels, scores)

    assert lift == pytest.approx(5.0)
    assert capture == pytest.approx(0.5)


def test_compute_lift_by_decile_totals() -> None:
    scores = np.arange(20, 0, -1) / 20
    labels = np.zeros(20)
    labels[[0, 1, 10, 15]] = 1

    table = lift_by_decile(labels, scores)

    assert table["n"].tolist() == [2] * 10
    assert table["positives"].tolist() == [2, 0, 0, 0, 0, 1, 0, 1, 0, 0]
    assert table["cumulative_capture"].iloc[-1] == pytest.approx(1.0)
    assert table["lift"].iloc[0] == pytest.approx(5.0)


def test_compute_binary_metrics_single_class_is_nan() -> None:
    metrics = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])

    assert math.isnan(metrics["roc_auc"])
    assert math.isnan(metrics["lift_top_decile"])
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)


def test_flag_group_metrics_weak_small_and_single_class_groups() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    language = rng.choice(["de", "en", "fr"], size=n)
    p = rng.uniform(0.05, 0.95, size=n)
    y = (rng.random(n) < p).astype(int)
    # For "fr" the score says nothing about the label.
    fr = language == "fr"
    y[fr] = (rng.random(fr.sum()) < 0.5).astype(int)
    frame = pd.DataFrame({"language": language, "segment": "retail"})
    frame.loc[:9, "segment"] = "tiny"
    frame.loc[10:99, "segment"] = "vip"
    y[10:100] = 1

    table = group_metrics(frame, y, p, group_columns=["language", "segment", "absent"], min_rows=50)
    by = table.set_index(["group_column", "group"])

    assert bool(by.loc[("language", "fr"), "flagged"])
    assert not bool(by.loc[("language", "de"), "flagged"])
    assert by.loc[("segment", "tiny"), "status"] == "n/a: fewer than 50 rows"
    assert by.loc[("segment", "vip"), "status"] == "n/a: one class"
    assert math.isnan(by.loc[("segment", "vip"), "roc_auc"])
    assert "absent" not in set(table["group_column"])


def test_compute_regression_metrics_known_example() -> None:
    y = np.array([0.0, 0.0, 10.0, 30.0] + [0.0] * 6)
    pred = np.array([1.0, 0.0, 8.0, 34.0] + [0.0] * 6)

    metrics = regression_metrics(y, pred)

    assert metrics["mae"] == pytest.approx(7.0 / 10)
    assert metrics["rmse"] == pytest.approx(math.sqrt(21.0 / 10))
    assert metrics["top_decile_capture"] == pytest.approx(30.0 / 40.0)


def _scored(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a score with ties (rounded), informative about the labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    return y, np.round(rng.normal(y, 1.0), 1)


def test_compute_weighted_ranking_metrics_match_sklearn_with_weights() -> None:
    y, p = _scored(2_000, 3)
    weights = np.random.default_rng(4).integers(0, 3, (3, y.size)).astype(float)

    got = weighted_ranking_metrics(y, p, weights)

    for row, w in zip(got, weights, strict=True):
        assert row[0] == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
        assert row[1] == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-12)


def test_compute_paired_bootstrap_interval_excludes_zero_for_better_score() -> None:
    y, better = _scored(3_000, 5)
    worse = better + np.random.default_rng(6).normal(0.0, 1.5, y.size)

    table = paired_bootstrap(y, better, worse, rounds=300)

    assert table.loc["roc_auc", "difference"] == pytest.approx(
        roc_auc_score(y, better) - roc_auc_score(y, worse)
    )
    assert table.loc["pr_auc", "difference"] == pytest.approx(
        average_precision_score(y, better) - average_precision_score(y, worse)
    )
    assert (table["ci_low"] > 0).all()
    assert (table["ci_low"] < table["difference"]).all()
    assert (table["difference"] < table["ci_high"]).all()


def test_compute_paired_bootstrap_interval_covers_zero_for_equal_scores() -> None:
    y, p = _scored(3_000, 7)
    rng = np.random.default_rng(8)
    # Two scores equally good: the same signal, each with its own noise.
    a, b = p + rng.normal(0.0, 0.5, y.size), p + rng.normal(0.0, 0.5, y.size)

    table = paired_bootstrap(y, a, b, rounds=300)

    assert ((table["ci_low"] < 0) & (table["ci_high"] > 0)).all()


def test_compute_paired_bootstrap_is_narrower_than_unpaired_spread() -> None:
    # Pairing cancels the resampling luck both scores share: the difference's interval is much
    # narrower than either AUC's own.
    y, p = _scored(3_000, 9)
    close = p + np.random.default_rng(10).normal(0.0, 0.3, y.size)
    own = paired_bootstrap(y, p, np.zeros(y.size) + 0.5, rounds=300)
    paired = paired_bootstrap(y, p, close, rounds=300)

    own_width = own.loc["roc_auc", "ci_high"] - own.loc["roc_auc", "ci_low"]
    paired_width = paired.loc["roc_auc", "ci_high"] - paired.loc["roc_auc", "ci_low"]
    assert paired_width < 0.5 * own_width


def test_flag_margin_over_baselines_clear_only_when_large_and_significant() -> None:
    y, p = _scored(3_000, 11)
    rng = np.random.default_rng(12)
    baselines = {
        "weak": p + rng.normal(0.0, 2.0, y.size),  # far worse
        "twin": p + rng.normal(0.0, 0.05, y.size),  # as good
    }

    table = margin_over_baselines(y, p, baselines, rounds=200).set_index(
        ["baseline_name", "metric"]
    )

    assert table.loc[("weak", "roc_auc"), "clear"]
    assert table.loc[("weak", "pr_auc"), "clear"]
    assert not table.loc[("twin", "roc_auc"), "clear"]
    assert not table.loc[("twin", "pr_auc"), "clear"]
    assert table.loc[("weak", "roc_auc"), "difference"] >= 0.02

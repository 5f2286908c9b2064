"""Evaluation metrics for churn probabilities and CLV predictions, overall and per group.

Conventions:

- **ECE** (expected calibration error) uses 10 **equal-frequency** bins by default: the
  predictions are sorted and cut into bins of (nearly) equal size, so every bin holds enough rows to
  estimate its churn rate even when most predictions are small, as they are for churn.
  ECE = sum over bins of (bin rows / all rows) * |mean label - mean prediction|.
  `strategy="uniform"` gives the textbook equal-width bins on [0, 1].
- **Top decile** = the 10% of rows with the highest score (ceil(n / 10) rows; ties keep input
  order). Lift = churn rate in the top decile / overall churn rate; capture = share of all churners
  found in the top decile.
- **Clear margin** over a baseline: the model's ROC-AUC and PR-AUC both exceed the baseline's by at
  least `CLEAR_MARGIN` on the test fold, and the paired bootstrap 95 % interval of each difference
  excludes 0 (`margin_over_baselines`). Paired: every resample draws the same rows for both scores,
  so the row-to-row luck they share cancels out of the difference.
- A group (e.g. language = "fr") gets metrics only if it has at least `min_rows` rows and both
  classes; otherwise its status says why it is n/a. A group is **flagged** when its ROC-AUC is more
  than `auc_gap` below the overall ROC-AUC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

BinStrategy = Literal["quantile", "uniform"]
GROUP_COLUMNS = ("language", "country", "segment")
CLEAR_MARGIN = 0.02
RANKING_METRICS = ("roc_auc", "pr_auc")
_EPS = 1e-15


def _as_arrays(y_true: object, y_score: object) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_score, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {p.size}")
    return y, p


def expected_calibration_error(
    y_true: object, y_prob: object, *, n_bins: int = 10, strategy: BinStrategy = "quantile"
) -> float:
    """Expected calibration error of probabilities.

    Args:
        y_true: 0/1 labels.
        y_prob: Predicted probabilities of the positive class.
        n_bins: Number of bins.
        strategy: "quantile" (equal-frequency, default) or "uniform" (equal-width on [0, 1]).

    Returns:
        Weighted mean absolute gap between observed rate and mean prediction per bin.
    """
    y, p = _as_arrays(y_true, y_prob)
    if y.size == 0:
        return math.nan
    if strategy == "quantile":
        order = np.argsort(p, kind="stable")
        bins = np.empty(p.size, dtype=int)
        bins[order] = np.arange(p.size) * n_bins // p.size
    elif strategy == "uniform":
        bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / y.size)


def calibration_table(
    y_true: object, y_prob: object, *, n_bins: int = 10, strategy: BinStrategy = "quantile"
) -> pd.DataFrame:
    """Per-bin mean prediction and observed rate (the data behind a reliability diagram).

    Args:
        y_true: 0/1 labels.
        y_prob: Predicted probabilities.
        n_bins: Number of bins.
        strategy: As in `expected_calibration_error`.

    Returns:
        Columns `bin`, `n`, `mean_predicted`, `observed_rate`; empty bins are left out.
    """
    y, p = _as_arrays(y_true, y_prob)
    if strategy == "quantile":
        order = np.argsort(p, kind="stable")
        bins = np.empty(p.size, dtype=int)
        bins[order] = np.arange(p.size) * n_bins // max(p.size, 1)
    else:
        bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "y": y, "p": p})
    table = frame.groupby("bin").agg(
        n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")
    )
    return table.reset_index()


def _top_decile_mask(p: np.ndarray) -> np.ndarray:
    k = math.ceil(p.size / 10)
    order = np.argsort(-p, kind="stable")
    mask = np.zeros(p.size, dtype=bool)
    mask[order[:k]] = True
    return mask


def top_decile_lift(y_true: object, y_score: object) -> tuple[float, float]:
    """Lift and capture of the top-scored 10%.

    Args:
        y_true: 0/1 labels.
        y_score: Scores; higher means more likely positive.

    Returns:
        (lift, capture): positive rate in the top decile over the overall rate, and the share of
        all positives that are in the top decile. NaN when there is no positive.
    """
    y, p = _as_arrays(y_true, y_score)
    positives = y.sum()
    if y.size == 0 or positives == 0:
        return math.nan, math.nan
    top = _top_decile_mask(p)
    lift = float(y[top].mean() / y.mean())
    capture = float(y[top].sum() / positives)
    return lift, capture


def lift_by_decile(y_true: object, y_score: object) -> pd.DataFrame:
    """Churn rate, lift and cumulative capture for each score decile (1 = highest scores).

    Args:
        y_true: 0/1 labels.
        y_score: Scores; higher means more likely positive.

    Returns:
        Columns `decile`, `n`, `positives`, `rate`, `lift`, `cumulative_capture`.
    """
    y, p = _as_arrays(y_true, y_score)
    order = np.argsort(-p, kind="stable")
    decile = np.empty(p.size, dtype=int)
    decile[order] = np.arange(p.size) * 10 // max(p.size, 1) + 1
    frame = pd.DataFrame({"decile": decile, "y": y})
    table = frame.groupby("decile").agg(n=("y", "size"), positives=("y", "sum")).reset_index()
    table["rate"] = table["positives"] / table["n"]
    overall = y.mean() if y.size else math.nan
    table["lift"] = table["rate"] / overall if overall else math.nan
    total = table["positives"].sum()
    table["cumulative_capture"] = table["positives"].cumsum() / total if total else math.nan
    return table


def binary_metrics(
    y_true: object, y_prob: object, *, n_bins: int = 10, strategy: BinStrategy = "quantile"
) -> dict[str, float]:
    """All churn metrics of one set of probabilities.

    Args:
        y_true: 0/1 labels.
        y_prob: Predicted churn probabilities.
        n_bins: ECE bins.
        strategy: ECE binning, see the module docstring.

    Returns:
        `n`, `base_rate`, `roc_auc`, `pr_auc`, `brier`, `log_loss`, `ece`, `lift_top_decile`,
        `capture_top_decile`. Ranking metrics are NaN when only one class is present.
    """
    y, p = _as_arrays(y_true, y_prob)
    both = y.size > 0 and 0 < y.sum() < y.size
    clipped = np.clip(p, _EPS, 1 - _EPS)
    lift, capture = top_decile_lift(y, p)
    return {
        "n": float(y.size),
        "base_rate": float(y.mean()) if y.size else math.nan,
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "brier": float(brier_score_loss(y, p)) if y.size else math.nan,
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])) if y.size else math.nan,
        "ece": expected_calibration_error(y, p, n_bins=n_bins, strategy=strategy),
        "lift_top_decile": lift,
        "capture_top_decile": capture,
    }


def group_metrics(
    frame: pd.DataFrame,
    y_true: object,
    y_prob: object,
    *,
    group_columns: Sequence[str] = GROUP_COLUMNS,
    min_rows: int = 50,
    auc_gap: float = 0.05,
) -> pd.DataFrame:
    """Churn metrics per value of each group column, with under-performing groups flagged.

    Args:
        frame: Rows aligned with `y_true` / `y_prob`, holding the group columns. Columns missing
            from `frame` are skipped.
        y_true: 0/1 labels.
        y_prob: Predicted churn probabilities.
        group_columns: Columns to group by, one at a time.
        min_rows: Fewest rows for a group to be evaluated.
        auc_gap: A group is flagged when its ROC-AUC < overall ROC-AUC - auc_gap.

    Returns:
        One row per (group_column, group): `group_column`, `group`, `n`, `positives`, `roc_auc`,
        `pr_auc`, `brier`, `ece`, `status` ("ok", "n/a: fewer than N rows", "n/a: one class"),
        `flagged`.
    """
    y, p = _as_arrays(y_true, y_prob)
    if len(frame) != y.size:
        raise ValueError(f"frame has {len(frame)} rows but y_true has {y.size}")
    overall = binary_metrics(y, p)["roc_auc"]
    rows: list[dict[str, object]] = []
    for column in group_columns:
        if column not in frame.columns:
            continue
        values = frame[column].astype("string").fillna("(missing)").to_numpy()
        for group in sorted(pd.unique(values)):
            mask = values == group
            yg, pg = y[mask], p[mask]
            row: dict[str, object] = {
                "group_column": column,
                "group": str(group),
                "n": int(mask.sum()),
                "positives": int(yg.sum()),
            }
            if mask.sum() < min_rows:
                status = f"n/a: fewer than {min_rows} rows"
            elif yg.sum() in (0, mask.sum()):
                status = "n/a: one class"
            else:
                status = "ok"
            metrics = binary_metrics(yg, pg) if status == "ok" else {}
            for name in ("roc_auc", "pr_auc", "brier", "ece"):
                row[name] = metrics.get(name, math.nan)
            row["status"] = status
            auc = float(row["roc_auc"])  # type: ignore[arg-type]
            row["flagged"] = bool(status == "ok" and auc < overall - auc_gap)
            rows.append(row)
    columns = ["group_column", "group", "n", "positives", "roc_auc", "pr_auc", "brier", "ece"]
    return pd.DataFrame(rows, columns=[*columns, "status", "flagged"])


def regression_metrics(y_true: object, y_pred: object) -> dict[str, float]:
    """CLV metrics.

    Args:
        y_true: Actual revenue in the horizon.
        y_pred: Predicted revenue.

    Returns:
        `n`, `mae`, `rmse`, `spearman` (rank correlation), `top_decile_capture` (share of all
        actual revenue held by the 10% of rows predicted highest), `mean_actual`, `mean_predicted`.
    """
    y, p = _as_arrays(y_true, y_pred)
    total = y.sum()
    top = _top_decile_mask(p) if y.size else np.zeros(0, dtype=bool)
    constant = y.size < 2 or np.ptp(y) == 0 or np.ptp(p) == 0
    return {
        "n": float(y.size),
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(math.sqrt(mean_squared_error(y, p))),
        "spearman": math.nan if constant else float(spearmanr(y, p).statistic),
        "top_decile_capture": float(y[top].sum() / total) if total else math.nan,
        "mean_actual": float(y.mean()),
        "mean_predicted": float(p.mean()),
    }


def _resample_counts(rng: np.random.Generator, n: int, rounds: int) -> np.ndarray:
    """(rounds, n): how often each row is drawn in each bootstrap resample of n rows."""
    drawn = rng.integers(0, n, (rounds, n)) + n * np.arange(rounds)[:, None]
    return np.bincount(drawn.ravel(), minlength=rounds * n).reshape(rounds, n).astype(float)


def weighted_ranking_metrics(y_true: object, y_score: object, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC and PR-AUC (average precision) under many row weightings at once.

    Scores are sorted once; tied scores form one threshold, as in scikit-learn, so each row of the
    result equals `roc_auc_score` / `average_precision_score` with that row as `sample_weight`.

    Args:
        y_true: 0/1 labels, n rows.
        y_score: Scores, n rows; higher means more likely positive.
        weights: (rounds, n) non-negative row weights (bootstrap counts).

    Returns:
        (rounds, 2): ROC-AUC and PR-AUC per weighting; NaN where a class has no weight.
    """
    y, p = _as_arrays(y_true, y_score)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted, w_sorted = p[order], y[order] > 0.5, w[:, order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])
    pos = np.add.reduceat(w_sorted * y_sorted, starts, axis=1)
    neg = np.add.reduceat(w_sorted * ~y_sorted, starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    total_pos, total_neg = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        # A positive beats every negative scored below it and half of those tied with it.
        auc = (pos * (total_neg - fp + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)[:, 0]
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        ap = (pos * precision).sum(axis=1) / total_pos[:, 0]
    empty = (total_pos[:, 0] == 0) | (total_neg[:, 0] == 0)
    return np.where(empty[:, None], np.nan, np.column_stack([auc, ap]))


def paired_bootstrap(
    y_true: object,
    y_score: object,
    y_baseline: object,
    *,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> pd.DataFrame:
    """Paired bootstrap of the ROC-AUC and PR-AUC differences (score minus baseline).

    Args:
        y_true: 0/1 labels.
        y_score: The model's scores.
        y_baseline: The baseline's scores on the same rows.
        rounds: Bootstrap resamples.
        level: Coverage of the percentile interval.
        seed: Seed of the resampling.
        chunk: Resamples computed together (bounds memory at chunk x rows).

    Returns:
        One row per metric (`roc_auc`, `pr_auc`; index `metric`) with `model`, `baseline`,
        `difference` (on the full test fold), `ci_low`, `ci_high` (percentile interval of the
        resampled differences) and `share_not_better` (share of resamples with a difference <= 0).
    """
    y, p = _as_arrays(y_true, y_score)
    _, b = _as_arrays(y_true, y_baseline)
    if rounds < 1:
        raise ValueError("rounds must be positive")
    ones = np.ones((1, y.size))
    full_model = weighted_ranking_metrics(y, p, ones)[0]
    full_baseline = weighted_ranking_metrics(y, b, ones)[0]
    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, rounds, chunk):
        counts = _resample_counts(rng, y.size, min(chunk, rounds - start))
        differences.append(
            weighted_ranking_metrics(y, p, counts) - weighted_ranking_metrics(y, b, counts)
        )
    diff = np.concatenate(differences)
    tail = (1.0 - level) / 2.0
    low, high = np.nanquantile(diff, [tail, 1.0 - tail], axis=0)
    return pd.DataFrame(
        {
            "model": full_model,
            "baseline": full_baseline,
            "difference": full_model - full_baseline,
            "ci_low": low,
            "ci_high": high,
            "share_not_better": np.nanmean(diff <= 0, axis=0),
        },
        index=pd.Index(list(RANKING_METRICS), name="metric"),
    )


def margin_over_baselines(
    y_true: object,
    y_score: object,
    baselines: dict[str, object],
    *,
    margin: float = CLEAR_MARGIN,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The model's margin over each baseline, with paired bootstrap intervals.

    Args:
        y_true: 0/1 labels of the test fold.
        y_score: The model's scores.
        baselines: Baseline name -> its scores on the same rows.
        margin: Smallest difference that counts as clear.
        rounds: Bootstrap resamples.
        level: Interval coverage.
        seed: Seed of the resampling (the same resamples serve every baseline).

    Returns:
        One row per (baseline, metric) with the columns of `paired_bootstrap` and `clear`: the
        difference is at least `margin` and the interval lies above 0.
    """
    parts = []
    for name, scores in baselines.items():
        table = paired_bootstrap(
            y_true, y_score, scores, rounds=rounds, level=level, seed=seed
        ).reset_index()
        table.insert(0, "baseline_name", name)
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    out["clear"] = (out["difference"] >= margin) & (out["ci_low"] > 0)
    return out

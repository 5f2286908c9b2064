"""Evaluation figures. Each function returns a matplotlib `Figure` and touches no global state.

Figures are built with `matplotlib.figure.Figure` directly rather than `pyplot`, so nothing depends
on (or changes) the process-wide backend, and figures are freed when dropped; `Figure.savefig`
renders with Agg.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from training.metrics import calibration_table, lift_by_decile

Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _figure(width: float = 6.0, height: float = 4.5) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def plot_roc(curves: Curves) -> Figure:
    """ROC curves.

    Args:
        curves: Model name -> (labels, scores).

    Returns:
        The figure.
    """
    fig = _figure()
    ax = fig.add_subplot()
    for name, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    return fig


def plot_precision_recall(curves: Curves) -> Figure:
    """Precision-recall curves, with the base rate as reference.

    Args:
        curves: Model name -> (labels, scores).

    Returns:
        The figure.
    """
    fig = _figure()
    ax = fig.add_subplot()
    base = None
    for name, (y, p) in curves.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name)
        base = float(np.mean(y))
    if base is not None:
        ax.axhline(base, linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return fig


def plot_calibration(curves: Curves, *, n_bins: int = 10) -> Figure:
    """Reliability diagram: observed churn rate against mean prediction per equal-frequency bin.

    Args:
        curves: Model name -> (labels, probabilities).
        n_bins: Number of bins.

    Returns:
        The figure.
    """
    fig = _figure()
    ax = fig.add_subplot()
    top = 0.0
    for name, (y, p) in curves.items():
        table = calibration_table(y, p, n_bins=n_bins)
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
        top = max(top, float(table["mean_predicted"].max()), float(table["observed_rate"].max()))
    limit = min(1.0, top * 1.05 + 0.01)
    ax.plot([0, limit], [0, limit], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed churn rate",
        title="Calibration (equal-frequency bins)",
        xlim=(0, limit),
        ylim=(0, limit),
    )
    ax.legend(loc="upper left")
    return fig


def plot_lift(curves: Curves) -> Figure:
    """Lift by score decile (1 = highest-scored 10%).

    Args:
        curves: Model name -> (labels, scores).

    Returns:
        The figure.
    """
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / max(len(curves), 1)
    for i, (name, (y, p)) in enumerate(curves.items()):
        table = lift_by_decile(y, p)
        ax.bar(
            table["decile"] + (i - (len(curves) - 1) / 2) * width, table["lift"], width, label=name
        )
    ax.axhline(1.0, linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="score decile (1 = highest risk)", ylabel="lift", title="Lift by decile")
    ax.set_xticks(range(1, 11))
    ax.legend(loc="upper right")
    return fig


def plot_importance(importance: pd.Series, *, top_n: int = 20) -> Figure:
    """Horizontal bars of feature importance (gain), largest at the top.

    Args:
        importance: Feature -> importance, e.g. `ChurnModel.feature_importance("gain")`.
        top_n: How many features to show.

    Returns:
        The figure.
    """
    shown = importance.sort_values(ascending=False).head(top_n)[::-1]
    fig = _figure(6.0, max(2.5, 0.3 * len(shown) + 1.0))
    ax = fig.add_subplot()
    total = float(importance.sum()) or 1.0
    ax.barh(list(shown.index), shown.to_numpy() / total)
    ax.set(xlabel="share of total gain", title="Feature importance (gain)")
    return fig


def plot_group_auc(groups: pd.DataFrame, *, overall_auc: float, auc_gap: float = 0.05) -> Figure:
    """ROC-AUC per group (from `metrics.group_metrics`), flagged groups in red.

    Args:
        groups: The per-group table; rows with status other than "ok" are left out.
        overall_auc: Overall ROC-AUC, drawn as a reference line.
        auc_gap: Flagging threshold, drawn below the reference.

    Returns:
        The figure.
    """
    ok = groups[groups["status"] == "ok"]
    labels = [f"{c}={g}" for c, g in zip(ok["group_column"], ok["group"], strict=True)]
    fig = _figure(6.0, max(2.5, 0.3 * len(ok) + 1.0))
    ax = fig.add_subplot()
    colours = ["tab:red" if flag else "tab:blue" for flag in ok["flagged"]]
    ax.barh(labels[::-1], ok["roc_auc"].to_numpy()[::-1], color=colours[::-1])
    ax.axvline(overall_auc, color="black", linewidth=1, label=f"overall {overall_auc:.3f}")
    ax.axvline(
        overall_auc - auc_gap, color="tab:red", linestyle="--", linewidth=1, label="flag threshold"
    )
    low = float(np.nanmin([*ok["roc_auc"].to_numpy(), overall_auc - auc_gap])) if len(ok) else 0.5
    ax.set(xlabel="ROC-AUC", title="ROC-AUC by group", xlim=(max(0.0, low - 0.05), 1.0))
    ax.legend(loc="lower right")
    return fig


def plot_clv_deciles(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]) -> Figure:
    """Mean actual vs mean predicted CLV per decile of each model's prediction.

    Args:
        y_true: Actual revenue.
        predictions: Model name -> predicted revenue.

    Returns:
        The figure.
    """
    fig = _figure()
    ax = fig.add_subplot()
    y = np.asarray(y_true, dtype=float)
    for name, pred in predictions.items():
        p = np.asarray(pred, dtype=float)
        order = np.argsort(-p, kind="stable")
        decile = np.empty(p.size, dtype=int)
        decile[order] = np.arange(p.size) * 10 // max(p.size, 1) + 1
        frame = pd.DataFrame({"decile": decile, "y": y, "p": p}).groupby("decile").mean()
        line = ax.plot(frame.index, frame["y"], marker="o", label=f"{name}: actual")[0]
        ax.plot(
            frame.index,
            frame["p"],
            linestyle="--",
            color=line.get_color(),
            label=f"{name}: predicted",
        )
    ax.set(
        xlabel="predicted CLV decile (1 = highest)",
        ylabel="mean revenue, next 365 days",
        title="CLV by predicted decile",
    )
    ax.set_xticks(range(1, 11))
    ax.legend(loc="upper right")
    return fig

"""One-page Markdown evaluation reports an analyst can open next to their PNG figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from training.split import TimeSplit

CHURN_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "lift_top_decile",
    "capture_top_decile",
)
CLV_METRICS = ("mae", "rmse", "spearman", "top_decile_capture", "mean_actual", "mean_predicted")


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 100 else f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, *, index: bool = True) -> str:
    """Render a frame as a GitHub-flavoured Markdown table (floats to 3 decimals, NaN as n/a).

    Args:
        frame: The table.
        index: Include the index as the first column.

    Returns:
        The table text, one line per row.
    """
    shown = frame.reset_index() if index else frame
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = [header, rule]
    for row in shown.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _figures(figures: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    for title, filename in figures.items():
        lines += [f"### {title}", "", f"![{title}]({filename})", ""]
    return lines


def _split_lines(split: TimeSplit, counts: Mapping[str, int]) -> list[str]:
    described = split.describe()
    calibration = (
        [
            f"- calibration cutoff: {described['calibration_cutoff']} "
            f"({counts.get('calibration', 0)} rows)"
        ]
        if split.calibration_cutoff is not None
        else []
    )
    return [
        f"- training cutoffs: {described['train_cutoffs']} ({counts.get('train', 0)} rows)",
        *calibration,
        f"- test cutoff: {described['test_cutoff']} ({counts.get('test', 0)} rows)",
        f"- left out by the {split.horizon_days}-day embargo: "
        f"{described['embargoed_cutoffs'] or 'none'}",
    ]


def _margin_lines(margins: pd.DataFrame, margin: float) -> list[str]:
    clear = bool(margins["clear"].all())
    shown = margins.rename(columns={"baseline_name": "over", "model": "served model"})
    return [
        "## Margin over the baselines (test fold, paired bootstrap)",
        "",
        markdown_table(shown, index=False),
        "",
        f"A margin is clear when the difference is at least {margin:.2f} and its 95 % interval "
        "lies above 0; the interval comes from resampling the test rows, the same rows for both "
        "scores. "
        + (
            "**The served model beats every baseline by a clear margin on ROC-AUC and PR-AUC.**"
            if clear
            else "**Not every margin is clear**: see the rows with `clear` False."
        ),
    ]


def churn_report(
    *,
    model_name: str,
    feature_set: str,
    split: TimeSplit,
    counts: Mapping[str, int],
    metrics: pd.DataFrame,
    groups: pd.DataFrame,
    figures: Mapping[str, str],
    data_fingerprint: str,
    auc_gap: float,
    top_features: Sequence[str] = (),
    margins: pd.DataFrame | None = None,
    margin: float = 0.02,
) -> str:
    """The churn model's evaluation page.

    Args:
        model_name: Registered model name.
        feature_set: Feature set name and version, e.g. "churn_features:2".
        split: The time split.
        counts: Rows per fold ("train", "calibration", "test").
        metrics: One row per model (index) with the columns of `CHURN_METRICS`.
        groups: `metrics.group_metrics` of the main model on the test fold.
        figures: Figure title -> PNG file name, relative to the report.
        data_fingerprint: Hash of the training panel.
        auc_gap: The group flagging threshold.
        top_features: Most important features, for the summary line.
        margins: `metrics.margin_over_baselines` of the served model (None: no section).
        margin: The difference that counts as clear, for the section's text.

    Returns:
        Markdown text.
    """
    shown = metrics[[c for c in CHURN_METRICS if c in metrics.columns]]
    flagged = groups[groups["flagged"]]
    candidates = metrics["roc_auc"].drop(index="model_uncalibrated", errors="ignore")
    best = candidates.idxmax() if candidates.notna().any() else "n/a"
    lines = [
        f"# {model_name}: evaluation on the test cutoff {split.describe()['test_cutoff']}",
        "",
        f"Feature set `{feature_set}`; training data fingerprint `{data_fingerprint[:16]}`; "
        f"churn = no purchase or a cancellation within {split.horizon_days} days after the cutoff.",
        "",
        "## Split (by time, with embargo)",
        "",
        *_split_lines(split, counts),
        "",
        "## Model vs baselines (test fold)",
        "",
        markdown_table(shown.rename_axis("model")),
        "",
        f"Best ROC-AUC among the served model and the baselines: **{best}**. `model` is LightGBM "
        "with isotonic calibration fitted on the calibration fold (what is served); "
        "`model_uncalibrated` is its raw booster, shown to see what calibration changes (isotonic "
        "steps tie some scores, which can cost a little ranking). ECE uses 10 equal-frequency "
        "bins; lift and capture are for the top-scored 10%.",
    ]
    if len(top_features):
        lines += ["", "Most important features (gain): " + ", ".join(top_features) + "."]
    if margins is not None and len(margins):
        lines += ["", *_margin_lines(margins, margin)]
    lines += [
        "",
        "## By group (test fold, model)",
        "",
        markdown_table(groups, index=False),
        "",
    ]
    if len(flagged):
        names = ", ".join(
            f"{c}={g}" for c, g in zip(flagged["group_column"], flagged["group"], strict=True)
        )
        lines.append(f"**Flagged** (ROC-AUC more than {auc_gap:.2f} below overall): {names}.")
    else:
        lines.append(f"No group's ROC-AUC is more than {auc_gap:.2f} below overall.")
    lines += ["", "## Figures", "", *_figures(figures)]
    return "\n".join(lines).rstrip() + "\n"


def clv_report(
    *,
    model_name: str,
    feature_set: str,
    split: TimeSplit,
    counts: Mapping[str, int],
    metrics: pd.DataFrame,
    figures: Mapping[str, str],
    data_fingerprint: str,
    objective: str,
) -> str:
    """The CLV model's evaluation page.

    Args:
        model_name: Registered model name.
        feature_set: Feature set name and version.
        split: The time split.
        counts: Rows per fold.
        metrics: One row per model with the columns of `CLV_METRICS`.
        figures: Figure title -> PNG file name.
        data_fingerprint: Hash of the training panel.
        objective: LightGBM objective used.

    Returns:
        Markdown text.
    """
    shown = metrics[[c for c in CLV_METRICS if c in metrics.columns]]
    lines = [
        f"# {model_name}: 365-day CLV on the test cutoff {split.describe()['test_cutoff']}",
        "",
        f"Feature set `{feature_set}`; training data fingerprint `{data_fingerprint[:16]}`; "
        f"LightGBM objective `{objective}`; baseline = average purchase value x frequency x "
        "expected lifespan from the training fold.",
        "",
        "## Split (by time, with embargo)",
        "",
        *_split_lines(split, counts),
        "",
        "## Model vs baseline (test fold)",
        "",
        markdown_table(shown.rename_axis("model")),
        "",
        "Top-decile capture = share of all actual revenue held by the 10% predicted highest.",
        "",
        "## Figures",
        "",
        *_figures(figures),
    ]
    return "\n".join(lines).rstrip() + "\n"

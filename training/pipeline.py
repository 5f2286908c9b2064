"""The training jobs a CLI command calls: `train_churn`, `train_clv` (and `promote`, re-exported).

Each job is split the same way:

1. `evaluate_churn` / `evaluate_clv` (pure): time split -> fit -> baselines -> metrics -> figures ->
   report text, returned as an evaluation object; no file, no MLflow;
2. `write_artifacts`: PNGs, `report.md`, metrics CSVs into `out_dir`;
3. `training.registry.log_training_run`: the MLflow run, registered version and aliases.

Rows whose label (`churned`) or target (`clv_365`) is not known yet, because its window is not
over (`label_complete` / `clv_complete` False in a `features.panel.build_panel` panel, or a missing
value), are dropped before splitting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.settings import get_settings
from training.baselines import RFMBaseline, logistic_baseline, rfm_columns
from training.churn import TUNABLE, ChurnModel, tune_churn_params
from training.clv import TARGET_DAYS, AverageCLVBaseline, CLVModel, clv_baseline_columns
from training.encoding import categorical_columns
from training.metrics import (
    CLEAR_MARGIN,
    GROUP_COLUMNS,
    binary_metrics,
    group_metrics,
    margin_over_baselines,
    regression_metrics,
)
from training.plots import (
    plot_calibration,
    plot_clv_deciles,
    plot_group_auc,
    plot_importance,
    plot_lift,
    plot_precision_recall,
    plot_roc,
)
from training.registry import (
    PromotionDecision,
    RegisteredRun,
    log_training_run,
    promote,
    serving_input_example,
)
from training.report import churn_report, clv_report
from training.split import Folds, TimeSplit, split_panel, time_split

LABEL = "churned"
CLV_TARGET = "clv_365"
CHURN_MODEL_NAME = "churn-risk"
CLV_MODEL_NAME = "clv"
MODEL = "model"
Progress = Callable[[str], None]

__all__ = [
    "ChurnEvaluation",
    "ClvEvaluation",
    "PromotionDecision",
    "TrainingResult",
    "data_fingerprint",
    "evaluate_churn",
    "evaluate_clv",
    "promote",
    "train_churn",
    "train_clv",
    "write_artifacts",
]


def data_fingerprint(panel: pd.DataFrame) -> str:
    """SHA-256 of the panel's shape, column names, dtypes and every cell (row order matters).

    Args:
        panel: The training panel.

    Returns:
        64 hex characters.
    """
    digest = hashlib.sha256()
    digest.update(f"{panel.shape}".encode())
    digest.update(json.dumps([[str(c), str(t)] for c, t in panel.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(panel, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _check_panel(
    panel: pd.DataFrame, feature_columns: Sequence[str], categorical: Sequence[str], target: str
) -> pd.DataFrame:
    needed = ["customer_id", "cutoff", target, *feature_columns]
    missing = [c for c in needed if c not in panel.columns]
    if missing:
        raise ValueError(f"the panel lacks columns: {', '.join(missing)}")
    stray = [c for c in categorical if c not in feature_columns]
    if stray:
        raise ValueError(f"categorical columns not among feature_columns: {', '.join(stray)}")
    keep = panel[target].notna()
    # build_panel(allow_incomplete=True) marks rows whose label window is not over yet.
    complete = {LABEL: "label_complete", CLV_TARGET: "clv_complete"}.get(target)
    if complete in panel.columns:
        keep &= panel[complete].astype(bool)
    labelled = panel[keep]
    if labelled.empty:
        raise ValueError(f"the panel has no rows with a known {target}")
    return labelled


def _counts(folds: Folds) -> dict[str, int]:
    return {
        "train": len(folds.train),
        "calibration": len(folds.calibration),
        "test": len(folds.test),
    }


@dataclass
class ChurnEvaluation:
    """Everything a churn training run produced, before anything is written.

    Attributes:
        model: The fitted calibrated LightGBM estimator.
        baselines: Fitted baselines by name ("rfm", "logistic").
        split: The time split.
        counts: Rows per fold.
        metrics: Test-fold metrics, one row per model ("model", "model_uncalibrated", "rfm",
            "logistic").
        groups: Per-group test metrics of the model, with the baselines' ROC-AUC alongside.
        figures: PNG file name -> figure.
        report: The Markdown report (refers to the PNG names).
        params: Model hyperparameters used (after tuning).
        feature_set: Feature set name and version.
        feature_columns: Features in model order.
        categorical: Categorical features.
        horizon_days: H of the label.
        fingerprint: `data_fingerprint` of the panel.
        margins: `metrics.margin_over_baselines` of the served model over "rfm" and "logistic"
            (ROC-AUC and PR-AUC differences with paired bootstrap intervals, and `clear`).
    """

    model: ChurnModel
    baselines: dict[str, Any]
    split: TimeSplit
    counts: dict[str, int]
    metrics: pd.DataFrame
    groups: pd.DataFrame
    figures: dict[str, Figure]
    report: str
    params: dict[str, Any]
    feature_set: str
    feature_columns: list[str]
    categorical: list[str]
    horizon_days: int
    fingerprint: str
    margins: pd.DataFrame = field(default_factory=pd.DataFrame)
    test_features: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


@dataclass
class ClvEvaluation:
    """Everything a CLV training run produced, before anything is written (see ChurnEvaluation)."""

    model: CLVModel
    baseline: AverageCLVBaseline
    split: TimeSplit
    counts: dict[str, int]
    metrics: pd.DataFrame
    figures: dict[str, Figure]
    report: str
    params: dict[str, Any]
    feature_set: str
    feature_columns: list[str]
    categorical: list[str]
    fingerprint: str
    test_features: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def evaluate_churn(
    panel: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical: Sequence[str] = (),
    feature_set: str,
    horizon_days: int = 90,
    seed: int = 0,
    tune_trials: int = 0,
    num_threads: int = 1,
    params: Mapping[str, Any] | None = None,
    group_columns: Sequence[str] = GROUP_COLUMNS,
    min_group_rows: int = 50,
    auc_gap: float = 0.05,
    margin: float = CLEAR_MARGIN,
    bootstrap_rounds: int = 1000,
    model_name: str = CHURN_MODEL_NAME,
    progress: Progress | None = None,
) -> ChurnEvaluation:
    """Split, fit the churn model and baselines, evaluate on the test cutoff, draw, report.

    Args:
        panel: One row per (customer_id, cutoff) with the features, `churned` and group columns;
            the RFM baseline uses its `days_since_last_purchase`, `n_purchase_<N>d` and
            `revenue_<N>d` columns whether or not they are features.
        feature_columns: Features, in model order.
        categorical: Which features are categorical (features with a text dtype are treated as
            categorical too).
        feature_set: Feature set name and version, e.g. "churn_features:2".
        horizon_days: H of the label (embargo length).
        seed: Seed of LightGBM, the logistic solver and Optuna.
        tune_trials: Optuna trials on the calibration fold (0 = use `params` / defaults).
        num_threads: LightGBM threads.
        params: `ChurnModel` hyperparameters overriding the defaults (and the tuning start).
        group_columns: Columns to evaluate per group (those absent from the panel are skipped).
        min_group_rows: Fewest rows for a group to get metrics.
        auc_gap: Flag groups with ROC-AUC more than this below overall.
        margin: Smallest ROC-AUC / PR-AUC difference over a baseline that counts as clear.
        bootstrap_rounds: Paired bootstrap resamples of the test fold for the margins' intervals.
        model_name: Name shown in the report.
        progress: Called with a short message before each step.

    Returns:
        The evaluation.
    """
    features = list(feature_columns)
    labelled = _check_panel(panel, features, categorical, LABEL)
    cats = categorical_columns(labelled, features, categorical)
    _say(progress, "splitting by time")
    split = time_split(labelled["cutoff"], horizon_days=horizon_days)
    folds = split_panel(labelled, split)
    y_train = folds.train[LABEL].astype(float).to_numpy()
    y_cal = folds.calibration[LABEL].astype(float).to_numpy()
    y_test = folds.test[LABEL].astype(float).to_numpy()
    X_train, X_cal, X_test = (f[features] for f in (folds.train, folds.calibration, folds.test))

    chosen = {k: v for k, v in (params or {}).items() if k in TUNABLE or k == "feature_fraction"}
    if tune_trials > 0:
        _say(progress, f"tuning hyperparameters ({tune_trials} trials)")
        chosen = tune_churn_params(
            X_train,
            y_train,
            X_cal,
            y_cal,
            categorical=cats,
            n_trials=tune_trials,
            seed=seed,
            num_threads=num_threads,
            base_params=chosen,
        )
    _say(progress, "fitting the churn model")
    model = ChurnModel(categorical=cats, seed=seed, num_threads=num_threads).set_params(**chosen)
    model.fit(X_train, y_train, X_calib=X_cal, y_calib=y_cal)

    _say(progress, "fitting baselines")
    # RFM reads its columns from the panel, so it runs even for a feature set without them.
    recency, frequency, monetary = rfm_columns([str(c) for c in labelled.columns])
    rfm = RFMBaseline(recency=recency, frequency=frequency, monetary=monetary)
    rfm.fit(folds.train, y_train, X_calib=folds.calibration, y_calib=y_cal)
    logistic = logistic_baseline(features, cats, seed=seed).fit(X_train, y_train)

    _say(progress, "evaluating on the test cutoff")
    scores = {
        MODEL: model.predict_proba(X_test)[:, 1],
        "model_uncalibrated": model.predict_raw(X_test),
        "rfm": rfm.predict_proba(folds.test)[:, 1],
        "logistic": np.asarray(logistic.predict_proba(X_test))[:, 1],
    }
    metrics = pd.DataFrame({name: binary_metrics(y_test, p) for name, p in scores.items()}).T
    group_kw: dict[str, Any] = {
        "group_columns": group_columns,
        "min_rows": min_group_rows,
        "auc_gap": auc_gap,
    }
    groups = group_metrics(folds.test, y_test, scores[MODEL], **group_kw)
    for name in ("rfm", "logistic"):
        other = group_metrics(folds.test, y_test, scores[name], **group_kw)
        groups[f"{name}_roc_auc"] = other["roc_auc"].to_numpy()
    _say(progress, f"bootstrapping the margins over the baselines ({bootstrap_rounds} resamples)")
    margins = margin_over_baselines(
        y_test,
        scores[MODEL],
        {name: scores[name] for name in ("logistic", "rfm")},
        margin=margin,
        rounds=bootstrap_rounds,
        seed=seed,
    )

    _say(progress, "drawing figures")
    curves = {name: (y_test, scores[name]) for name in (MODEL, "rfm", "logistic")}
    importance = model.feature_importance("gain")
    overall_auc = float(metrics["roc_auc"][MODEL])
    figures = {
        "roc.png": plot_roc(curves),
        "precision_recall.png": plot_precision_recall(curves),
        "calibration.png": plot_calibration(curves),
        "lift.png": plot_lift(curves),
        "importance.png": plot_importance(importance),
        "group_auc.png": plot_group_auc(groups, overall_auc=overall_auc, auc_gap=auc_gap),
    }
    fingerprint = data_fingerprint(panel)
    counts = _counts(folds)
    report = churn_report(
        model_name=model_name,
        feature_set=feature_set,
        split=split,
        counts=counts,
        metrics=metrics,
        groups=groups,
        figures=_titles(figures),
        data_fingerprint=fingerprint,
        auc_gap=auc_gap,
        top_features=list(importance.index[:5]),
        margins=margins,
        margin=margin,
    )
    used = {k: v for k, v in model.get_params().items() if k != "categorical"}
    return ChurnEvaluation(
        model=model,
        baselines={"rfm": rfm, "logistic": logistic},
        split=split,
        counts=counts,
        metrics=metrics,
        groups=groups,
        figures=figures,
        report=report,
        params=used,
        feature_set=feature_set,
        feature_columns=features,
        categorical=cats,
        horizon_days=horizon_days,
        fingerprint=fingerprint,
        margins=margins,
        test_features=X_test,
    )


_FIGURE_TITLES = {
    "roc.png": "ROC",
    "precision_recall.png": "Precision-recall",
    "calibration.png": "Calibration (reliability)",
    "lift.png": "Lift by decile",
    "importance.png": "Feature importance (gain)",
    "group_auc.png": "ROC-AUC by group",
    "clv_deciles.png": "CLV by predicted decile",
}


def _titles(figures: Mapping[str, Figure]) -> dict[str, str]:
    return {_FIGURE_TITLES.get(name, name): name for name in figures}


def evaluate_clv(
    panel: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical: Sequence[str] = (),
    feature_set: str,
    horizon_days: int = 90,
    seed: int = 0,
    num_threads: int = 1,
    objective: str = "tweedie",
    params: Mapping[str, Any] | None = None,
    model_name: str = CLV_MODEL_NAME,
    progress: Progress | None = None,
) -> ClvEvaluation:
    """Split with a 365-day embargo, fit the CLV model and the baseline, evaluate, draw, report.

    The embargo is the target's own window: a training row's `clv_365` is known only 365 days
    after its cutoff, so training cutoffs end 365 days before the test cutoff (no calibration fold).

    Args:
        panel: One row per (customer_id, cutoff) with the features and `clv_365` (and `churned`,
            used by the baseline's lifespan when present); the baseline uses its
            `n_purchase_<N>d` / `revenue_<N>d` columns whether or not they are features.
        feature_columns: Features, in model order.
        categorical: Which features are categorical.
        feature_set: Feature set name and version.
        horizon_days: H of the churn label (the baseline's churn rate refers to it).
        seed: LightGBM seed.
        num_threads: LightGBM threads.
        objective: "tweedie" (default) or "regression" (L2); see `training.clv`.
        params: Other `CLVModel` hyperparameters.
        model_name: Name shown in the report.
        progress: Called with a short message before each step.

    Returns:
        The evaluation.
    """
    features = list(feature_columns)
    labelled = _check_panel(panel, features, categorical, CLV_TARGET)
    cats = categorical_columns(labelled, features, categorical)
    _say(progress, "splitting by time")
    split = time_split(labelled["cutoff"], horizon_days=TARGET_DAYS, calibration=False)
    folds = split_panel(labelled, split)
    X_train, X_test = folds.train[features], folds.test[features]
    y_train = folds.train[CLV_TARGET].astype(float).to_numpy()
    y_test = folds.test[CLV_TARGET].astype(float).to_numpy()

    _say(progress, "fitting the CLV model and baseline")
    model = CLVModel(categorical=cats, objective=objective, seed=seed, num_threads=num_threads)
    model.set_params(**dict(params or {}))
    model.fit(X_train, y_train)
    frequency, monetary = clv_baseline_columns([str(c) for c in labelled.columns])
    baseline = AverageCLVBaseline(frequency=frequency, monetary=monetary, horizon_days=horizon_days)
    churned = folds.train[LABEL].astype(float) if LABEL in folds.train.columns else None
    baseline.fit(folds.train, churned=None if churned is None else churned.fillna(0).to_numpy())

    _say(progress, "evaluating on the test cutoff")
    predictions = {MODEL: model.predict(X_test), "average_clv": baseline.predict(folds.test)}
    metrics = pd.DataFrame(
        {name: regression_metrics(y_test, p) for name, p in predictions.items()}
    ).T
    figures = {
        "clv_deciles.png": plot_clv_deciles(y_test, predictions),
        "importance.png": plot_importance(model.feature_importance("gain")),
    }
    fingerprint = data_fingerprint(panel)
    counts = _counts(folds)
    report = clv_report(
        model_name=model_name,
        feature_set=feature_set,
        split=split,
        counts=counts,
        metrics=metrics,
        figures=_titles(figures),
        data_fingerprint=fingerprint,
        objective=objective,
    )
    used = {k: v for k, v in model.get_params().items() if k != "categorical"}
    return ClvEvaluation(
        model=model,
        baseline=baseline,
        split=split,
        counts=counts,
        metrics=metrics,
        figures=figures,
        report=report,
        params=used,
        feature_set=feature_set,
        feature_columns=features,
        categorical=cats,
        fingerprint=fingerprint,
        test_features=X_test,
    )


def write_artifacts(evaluation: ChurnEvaluation | ClvEvaluation, out_dir: Path) -> Path:
    """Write the figures, `report.md`, `metrics.csv` (and `groups.csv` for churn) to `out_dir`.

    Args:
        evaluation: From `evaluate_churn` or `evaluate_clv`.
        out_dir: Directory (created if needed).

    Returns:
        The path of `report.md`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in evaluation.figures.items():
        figure.savefig(out_dir / name, dpi=110)
    evaluation.metrics.rename_axis("model").to_csv(out_dir / "metrics.csv")
    if isinstance(evaluation, ChurnEvaluation):
        evaluation.groups.to_csv(out_dir / "groups.csv", index=False)
        evaluation.margins.to_csv(out_dir / "margins.csv", index=False)
    (out_dir / "features.json").write_text(
        json.dumps(
            {
                "feature_set": evaluation.feature_set,
                "feature_columns": evaluation.feature_columns,
                "categorical": evaluation.categorical,
            },
            indent=2,
        )
    )
    report = out_dir / "report.md"
    report.write_text(evaluation.report)
    return report


@dataclass(frozen=True)
class TrainingResult:
    """What a training job did.

    Attributes:
        evaluation: The evaluation (model, metrics, figures, report text).
        report_path: `report.md` in the output directory.
        run: The MLflow run id, registered version and its aliases.
    """

    evaluation: ChurnEvaluation | ClvEvaluation
    report_path: Path
    run: RegisteredRun


def _metric_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in text)


def flatten_metrics(metrics: pd.DataFrame) -> dict[str, float]:
    """`<model>.<metric>` -> value, from a table with one row per model."""
    values = metrics.to_numpy(dtype=float)
    return {
        f"{name}.{metric}": float(values[i, j])
        for i, name in enumerate(metrics.index)
        for j, metric in enumerate(metrics.columns)
    }


def churn_metrics_to_log(evaluation: ChurnEvaluation) -> dict[str, float]:
    """Flat MLflow metrics: `<model>.<metric>`, `group.<column>.<value>.<metric>` and
    `margin.<baseline>.<metric>.<difference|ci_low|ci_high>` with `margin.clear` (1 when the
    margin over every baseline is clear on both metrics)."""
    flat = flatten_metrics(evaluation.metrics)
    for row in evaluation.margins.to_dict(orient="records"):
        prefix = f"margin.{row['baseline_name']}.{row['metric']}"
        for column in ("difference", "ci_low", "ci_high"):
            flat[f"{prefix}.{column}"] = float(row[column])
    if len(evaluation.margins):
        flat["margin.clear"] = float(evaluation.margins["clear"].all())
    for row in evaluation.groups.to_dict(orient="records"):
        prefix = _metric_name(f"group.{row['group_column']}.{row['group']}")
        for metric in ("n", "roc_auc", "pr_auc", "brier", "ece", "flagged"):
            flat[f"{prefix}.{metric}"] = float(row[metric])
        for metric in ("rfm_roc_auc", "logistic_roc_auc"):
            if metric in row:
                flat[f"{prefix}.{metric}"] = float(row[metric])
    return flat


def _default_out_dir(model_name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return get_settings().data_dir / "reports" / f"{model_name}-{stamp}"


def _common_tags(evaluation: ChurnEvaluation | ClvEvaluation, target: str) -> dict[str, str]:
    return {
        "feature_set": evaluation.feature_set,
        "data_fingerprint": evaluation.fingerprint,
        "test_cutoff": evaluation.split.describe()["test_cutoff"],
        "target": target,
    }


def train_churn(
    panel: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical: Sequence[str] = (),
    feature_set: str,
    horizon_days: int | None = None,
    seed: int = 0,
    tune_trials: int = 0,
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    num_threads: int = 1,
    params: Mapping[str, Any] | None = None,
    group_columns: Sequence[str] = GROUP_COLUMNS,
    min_group_rows: int = 50,
    auc_gap: float = 0.05,
    model_name: str = CHURN_MODEL_NAME,
    experiment_name: str | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train, evaluate, report, log and register the churn-risk model.

    Runs `evaluate_churn`, writes the report and figures to `out_dir`, and logs one MLflow run:
    params (hyperparameters, split, horizon, seed), tags (`feature_set`, `data_fingerprint`,
    `test_cutoff`), metrics of the model and baselines overall and per group, the evaluation
    directory, the pickled estimator and a pyfunc model (returns P(churn)) registered as
    `model_name`. The new version becomes `challenger`; the first version also `champion`.

    Args:
        panel: The training panel (see `evaluate_churn`).
        feature_columns: Features, in model order.
        categorical: Which features are categorical.
        feature_set: Feature set name and version, e.g. "churn_features:2".
        horizon_days: H of the label; the settings' `churn_horizon_days` when None.
        seed: Random seed.
        tune_trials: Optuna trials (0 = no tuning; needs the `tune` extra).
        tracking_uri: MLflow tracking / registry URI; the settings' when None.
        artifact_root: Artifact root for a new experiment (see `registry.resolve_tracking`).
        out_dir: Where the report and figures go; `<data_dir>/reports/<model>-<UTC time>` when None.
        num_threads: LightGBM threads.
        params: `ChurnModel` hyperparameters overriding the defaults.
        group_columns: Columns evaluated per group.
        min_group_rows: Fewest rows for a group to get metrics.
        auc_gap: Group flagging threshold on ROC-AUC.
        model_name: Registered model name.
        experiment_name: MLflow experiment; `model_name` when None.
        progress: Called with a short message before each step (for a progress display).

    Returns:
        The evaluation, the report path and the registered run.
    """
    horizon = horizon_days if horizon_days is not None else get_settings().churn_horizon_days
    evaluation = evaluate_churn(
        panel,
        feature_columns=feature_columns,
        categorical=categorical,
        feature_set=feature_set,
        horizon_days=horizon,
        seed=seed,
        tune_trials=tune_trials,
        num_threads=num_threads,
        params=params,
        group_columns=group_columns,
        min_group_rows=min_group_rows,
        auc_gap=auc_gap,
        model_name=model_name,
        progress=progress,
    )
    directory = Path(out_dir) if out_dir is not None else _default_out_dir(model_name)
    _say(progress, f"writing the report to {directory}")
    report_path = write_artifacts(evaluation, directory)
    _say(progress, "logging to MLflow")
    run = log_training_run(
        kind="churn",
        estimator=evaluation.model,
        input_example=serving_input_example(evaluation.test_features, evaluation.categorical),
        params={
            **evaluation.params,
            **evaluation.split.describe(),
            "horizon_days": horizon,
            "tune_trials": tune_trials,
            "n_features": len(evaluation.feature_columns),
            **{f"rows.{k}": v for k, v in evaluation.counts.items()},
        },
        tags=_common_tags(evaluation, LABEL),
        metrics=churn_metrics_to_log(evaluation),
        artifact_dir=directory,
        model_name=model_name,
        experiment_name=experiment_name or model_name,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
    )
    return TrainingResult(evaluation=evaluation, report_path=report_path, run=run)


def train_clv(
    panel: pd.DataFrame,
    *,
    feature_columns: Sequence[str],
    categorical: Sequence[str] = (),
    feature_set: str,
    horizon_days: int | None = None,
    seed: int = 0,
    objective: str = "tweedie",
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    num_threads: int = 1,
    params: Mapping[str, Any] | None = None,
    model_name: str = CLV_MODEL_NAME,
    experiment_name: str | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train, evaluate, report, log and register the 365-day CLV model.

    Same lifecycle as `train_churn`: the pyfunc returns predicted revenue; metrics `model.mae`,
    `model.rmse`, `model.spearman`, `model.top_decile_capture` and the same for `average_clv`.

    Args:
        panel: The training panel with `clv_365` (see `evaluate_clv`).
        feature_columns: Features, in model order.
        categorical: Which features are categorical.
        feature_set: Feature set name and version.
        horizon_days: H of the churn label, for the baseline; settings when None.
        seed: Random seed.
        objective: "tweedie" or "regression".
        tracking_uri: MLflow tracking / registry URI; the settings' when None.
        artifact_root: Artifact root for a new experiment.
        out_dir: Where the report and figures go; `<data_dir>/reports/<model>-<UTC time>` when None.
        num_threads: LightGBM threads.
        params: Other `CLVModel` hyperparameters.
        model_name: Registered model name.
        experiment_name: MLflow experiment; `model_name` when None.
        progress: Called with a short message before each step.

    Returns:
        The evaluation, the report path and the registered run.
    """
    horizon = horizon_days if horizon_days is not None else get_settings().churn_horizon_days
    evaluation = evaluate_clv(
        panel,
        feature_columns=feature_columns,
        categorical=categorical,
        feature_set=feature_set,
        horizon_days=horizon,
        seed=seed,
        num_threads=num_threads,
        objective=objective,
        params=params,
        model_name=model_name,
        progress=progress,
    )
    directory = Path(out_dir) if out_dir is not None else _default_out_dir(model_name)
    _say(progress, f"writing the report to {directory}")
    report_path = write_artifacts(evaluation, directory)
    _say(progress, "logging to MLflow")
    flat = flatten_metrics(evaluation.metrics)
    run = log_training_run(
        kind="clv",
        estimator=evaluation.model,
        input_example=serving_input_example(evaluation.test_features, evaluation.categorical),
        params={
            **evaluation.params,
            **evaluation.split.describe(),
            "target_days": TARGET_DAYS,
            "n_features": len(evaluation.feature_columns),
            **{f"rows.{k}": v for k, v in evaluation.counts.items()},
        },
        tags=_common_tags(evaluation, CLV_TARGET),
        metrics=flat,
        artifact_dir=directory,
        model_name=model_name,
        experiment_name=experiment_name or model_name,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
    )
    return TrainingResult(evaluation=evaluation, report_path=report_path, run=run)

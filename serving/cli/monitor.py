"""`retain monitor`: drift of the champion churn model's inputs and score, training data vs now.

- **reference**: the training panel's rows (`DATA_DIR/panel.parquet`) at the cutoffs the model
  was trained on, read from its registered run (param `train_cutoffs`, logged by
  `training.pipeline.train_churn`); the run's `data_fingerprint` tag tells whether the panel is
  still the one it was trained on;
- **current**: the features of every customer active at `--as-of` (default: the day after the
  latest event), by the same feature engine and active-customer rule as `retain score`;
- both scored with the model, so the score (churn risk) distribution is compared too.

PSI per feature and for the score (`training.drift`), thresholds from the settings. Writes
`DATA_DIR/monitor/<as_of>/drift.json`, `drift.md` and `psi.png`, then moves the
`DATA_DIR/monitor/latest` pointer (atomically) to it: `GET /v1/monitor/drift` serves the run the
pointer names. Logs a run to the MLflow experiment `monitoring`, tagged with the model version.
Exit 0 whatever the drift, unless `--fail-on` says otherwise (then exit 3, for schedulers).
"""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from features.settings import get_settings
from serving.cli.common import console, exit_on_bad_input

if TYPE_CHECKING:
    from training.drift import DriftResult
    from training.registry import LoadedModel

MODEL_NAME = "churn-risk"
EXPERIMENT = "monitoring"
DRIFT_EXIT_CODE = 3  # 1 is bad input, 2 a usage error
REPORT_MD = "drift.md"
FIGURE = "psi.png"
_LEVEL = {"ok": 0, "warning": 1, "critical": 2}
_STYLE = {"ok": "green", "warning": "yellow", "critical": "red"}


class FailOn(StrEnum):
    never = "never"
    warning = "warning"
    critical = "critical"


def reference_rows(panel: pd.DataFrame, train_cutoffs: str) -> pd.DataFrame:
    """The panel's rows at the training cutoffs `2024-08-01,2024-09-01,…` (a run's param).

    Raises:
        ValueError: no cutoff listed, or the panel lacks one of them.
    """
    wanted = sorted({c.strip() for c in train_cutoffs.split(",") if c.strip()})
    if not wanted:
        raise ValueError("the model's run lists no training cutoffs (param `train_cutoffs`)")
    dates = pd.to_datetime(panel["cutoff"]).dt.strftime("%Y-%m-%d")
    if absent := sorted(set(wanted) - set(dates.unique())):
        raise ValueError(
            f"the panel lacks the model's training cutoff(s) {', '.join(absent)}: rebuild it "
            "with `retain features build` over the same data, or retrain"
        )
    return panel[dates.isin(wanted).to_numpy()].reset_index(drop=True)


def sample_rows(frame: pd.DataFrame, max_rows: int, *, seed: int = 0) -> pd.DataFrame:
    """At most `max_rows` rows, drawn without replacement (all of them when fewer)."""
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def _write_atomically(path: Path, data: str | bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    if isinstance(data, bytes):
        temporary.write_bytes(data)
    else:
        temporary.write_text(data)
    os.replace(temporary, path)


def report_document(
    result: DriftResult,
    *,
    model: LoadedModel,
    as_of: pd.Timestamp,
    reference_cutoffs: list[str],
    reference_total: int,
    same_panel: bool,
    latest_event: pd.Timestamp,
    mlflow_run_id: str | None,
) -> dict[str, Any]:
    """`drift.json`: the result (`DriftResult.to_dict`) with what was compared, by which model."""
    return {
        **result.to_dict(),
        "as_of": str(as_of.date()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model.name,
        "model_version": str(model.version),
        "model_alias": model.alias,
        "model_run_id": model.run_id,
        "feature_set": model.feature_set,
        "reference_cutoffs": reference_cutoffs,
        "reference_rows_available": reference_total,
        "reference_is_training_panel": same_panel,
        "latest_event": latest_event.isoformat(),
        "mlflow_run_id": mlflow_run_id,
    }


def write_report(
    run_dir: Path, result: DriftResult, document: dict[str, Any], context: dict[str, str]
) -> None:
    """`psi.png`, `drift.md` and `drift.json` into `run_dir` (each replaced atomically)."""
    from serving.routes.monitor import REPORT_JSON
    from training.drift import drift_report, plot_psi

    run_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    plot_psi(result).savefig(buffer, format="png", dpi=110)
    _write_atomically(run_dir / FIGURE, buffer.getvalue())
    _write_atomically(run_dir / REPORT_MD, drift_report(result, context=context, figure=FIGURE))
    _write_atomically(run_dir / REPORT_JSON, json.dumps(document, indent=2))


def point_latest(root: Path, run_dir: Path) -> None:
    """Move the `latest` pointer to `run_dir` in one rename: readers see the old or the new run."""
    from serving.routes.monitor import LATEST

    _write_atomically(root / LATEST, run_dir.name + "\n")


def _metric_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-. /" else "_" for ch in text)


def monitoring_metrics(result: DriftResult) -> dict[str, float]:
    """Flat MLflow metrics: `psi.<feature>`, `psi_score`, `max_psi`, counts, `status_level`."""
    counts = result.counts()
    metrics = {_metric_name(f"psi.{d.feature}"): d.psi for d in result.features}
    if result.score is not None:
        metrics["psi_score"] = result.score.psi
    metrics |= {
        "max_psi": result.max_psi,
        "n_reference": float(result.n_reference),
        "n_current": float(result.n_current),
        "n_warning": float(counts["warning"]),
        "n_critical": float(counts["critical"]),
        "status_level": float(_LEVEL[result.status]),
    }
    return metrics


def _start_run(model: LoadedModel, as_of: pd.Timestamp, status: str) -> tuple[Any, str]:
    """A run in the `monitoring` experiment, tagged with the model version; (client, run id)."""
    from mlflow import MlflowClient

    from training.registry import ensure_experiment, resolve_tracking

    uri, root = resolve_tracking()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = ensure_experiment(client, EXPERIMENT, artifact_root=root)
    tags = {
        "retain.kind": "monitoring",
        "model": model.name,
        "model_version": str(model.version),
        "model_alias": model.alias,
        "model_run_id": model.run_id,
        "feature_set": model.feature_set,
        "as_of": str(as_of.date()),
        "drift.status": status,
    }
    run = client.create_run(
        experiment_id, run_name=f"drift {model.name} v{model.version} {as_of.date()}", tags=tags
    )
    return client, run.info.run_id


def _finish_run(
    client: Any, run_id: str, result: DriftResult, params: dict[str, str], run_dir: Path
) -> None:
    try:
        _log_to_run(client, run_id, result, params, run_dir)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)


def _log_to_run(
    client: Any, run_id: str, result: DriftResult, params: dict[str, str], run_dir: Path
) -> None:
    from mlflow.entities import Metric, Param

    stamp = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), stamp, 0)
        for key, value in monitoring_metrics(result).items()
        if np.isfinite(value)
    ]
    for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 metrics a batch
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    client.log_artifacts(run_id, str(run_dir), artifact_path="drift")


def _table(result: DriftResult, rows: int = 12) -> Table:
    table = Table(title=None, show_edge=False, pad_edge=False)
    for column, justify in (("feature", "left"), ("PSI", "right"), ("status", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for d in result.compared[:rows]:
        name = f"{d.feature} (score)" if d.kind == "score" else d.feature
        table.add_row(name, f"{d.psi:.3f}", f"[{_STYLE[d.status]}]{d.status}[/]")
    return table


def monitor(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Current date: features use events before its midnight "
            "(default: the day after the latest event).",
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--data", help="Read this data directory instead of the online store."),
    ] = None,
    panel_path: Annotated[
        Path | None,
        typer.Option("--panel", help="Training panel (default DATA_DIR/panel.parquet)."),
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Registry alias (default: settings).")] = None,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            help="Exit 3 when the overall status reaches this level (for schedulers); "
            "'never' always exits 0 after writing the report."
        ),
    ] = FailOn.never,
    max_reference: Annotated[
        int, typer.Option(min=1000, help="Most training rows compared (a seeded sample).")
    ] = 200_000,
) -> None:
    """Compare the latest features and churn scores with the champion's training data (PSI)."""
    from features.io import load_directory
    from features.panel import build_panel
    from serving.models import check_model
    from serving.routes.monitor import monitor_root
    from training.drift import Thresholds, compare_frames
    from training.pipeline import data_fingerprint
    from training.registry import load_champion

    settings = get_settings()
    started = time.perf_counter()
    try:
        thresholds = Thresholds(settings.drift_warning_psi, settings.drift_critical_psi)
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc} (RETAIN_DRIFT_WARNING_PSI, RETAIN_DRIFT_CRITICAL_PSI)")
        raise typer.Exit(1) from None
    source = panel_path or settings.data_dir / "panel.parquet"
    if not source.exists():
        console.print(f"[red]error[/]: {source}: no panel; run `retain features build` first")
        raise typer.Exit(1)
    chosen_alias = alias or settings.model_alias
    with console.status(f"loading {MODEL_NAME}@{chosen_alias}…"):
        try:
            model = load_champion(MODEL_NAME, alias=chosen_alias)
        except LookupError as exc:
            console.print(f"[red]error[/]: {exc}; train churn first")
            raise typer.Exit(1) from None
    try:
        check_model(model)  # the current features are computed with the service's feature set
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(1) from None
    features = [str(c) for c in model.model.feature_names_in_]
    categorical = [str(c) for c in getattr(model.model, "categorical", ())]

    with console.status("reading the training panel…"):
        panel = pd.read_parquet(source)
        try:
            reference = reference_rows(panel, model.params.get("train_cutoffs", ""))
        except ValueError as exc:
            console.print(f"[red]error[/]: {source}: {exc}")
            raise typer.Exit(1) from None
        same_panel = data_fingerprint(panel) == model.tags.get("data_fingerprint")
        del panel
    if not same_panel:
        console.print(
            f"[yellow]warning[/]: {source} is not the panel {MODEL_NAME} v{model.version} was "
            "trained on (its fingerprint differs); its rows at the training cutoffs stand in"
        )
    reference_total = len(reference)
    reference = sample_rows(reference, max_reference)
    if missing := [c for c in features if c not in reference.columns]:
        console.print(f"[red]error[/]: {source} lacks the model's features {', '.join(missing)}")
        raise typer.Exit(1)

    with console.status("reading customers and events…"):
        if directory is not None:
            with exit_on_bad_input():
                dataset = load_directory(directory)
            customers, events = dataset.customers, dataset.events
        else:
            from serving.store import Store

            with Store(settings.database_url) as store:
                customers, events = store.customers_frame(), store.events_frame()
    if events.empty:
        console.print("[red]error[/]: no events to monitor")
        raise typer.Exit(1)
    latest_event = pd.Timestamp(events["timestamp"].max())
    cutoff = (
        pd.Timestamp(as_of).normalize()
        if as_of is not None
        else latest_event.normalize() + pd.Timedelta(days=1)
    ).as_unit("us")

    with console.status(f"features of the customers active at {cutoff.date()}…"):
        current = build_panel(
            events,
            customers,
            [cutoff],
            horizon_days=settings.churn_horizon_days,
            allow_incomplete=True,
        )
    if current.empty:
        console.print(f"[red]error[/]: no customer is active at {cutoff.date()}")
        raise typer.Exit(1)

    with console.status(
        f"scoring {len(reference):,} training and {len(current):,} current rows, PSI…"
    ):
        reference_scores = model.model.predict_proba(reference[features])[:, 1]
        current_scores = model.model.predict_proba(current[features])[:, 1]
        result = compare_frames(
            reference,
            current,
            features=features,
            categorical=categorical,
            reference_scores=reference_scores,
            current_scores=current_scores,
            thresholds=thresholds,
            bins=settings.drift_bins,
        )

    reference_cutoffs = sorted(
        {str(c.date()) for c in pd.to_datetime(reference["cutoff"]).drop_duplicates()}
    )
    root = monitor_root(settings)
    run_dir = root / str(cutoff.date())
    with console.status("writing the report and logging to MLflow…"):
        client, run_id = _start_run(model, cutoff, result.status)
        document = report_document(
            result,
            model=model,
            as_of=cutoff,
            reference_cutoffs=reference_cutoffs,
            reference_total=reference_total,
            same_panel=same_panel,
            latest_event=latest_event,
            mlflow_run_id=run_id,
        )
        context = {
            "model": f"{model.name} v{model.version} (@{model.alias}, run {model.run_id})",
            "current": f"customers active at {cutoff.date()} (latest event {latest_event})",
            "reference": f"training rows at {reference_cutoffs[0]} … {reference_cutoffs[-1]} "
            f"({len(reference_cutoffs)} cutoffs, {len(reference):,} of {reference_total:,} rows)"
            + ("" if same_panel else "; the panel differs from the one trained on"),
            "MLflow run": f"{run_id} (experiment `{EXPERIMENT}`)",
        }
        write_report(run_dir, result, document, context)
        params = {
            "warning_psi": str(thresholds.warning),
            "critical_psi": str(thresholds.critical),
            "bins": str(result.bins),
            "reference_cutoffs": ",".join(reference_cutoffs),
            "max_reference": str(max_reference),
        }
        _finish_run(client, run_id, result, params, run_dir)
        point_latest(root, run_dir)

    console.print(_table(result))
    counts = result.counts()
    style = _STYLE[result.status]
    console.print(
        f"drift [{style}]{result.status}[/] (max PSI {result.max_psi:.3f}; "
        f"{counts['critical']} critical, {counts['warning']} warning; sampling noise alone "
        f"~{result.noise_floor:.3f}) for {MODEL_NAME} "
        f"v{model.version}: {len(reference):,} training rows vs {len(current):,} active at "
        f"{cutoff.date()} in {time.perf_counter() - started:.1f}s -> {run_dir / REPORT_MD}"
    )
    if fail_on is not FailOn.never and _LEVEL[result.status] >= _LEVEL[fail_on.value]:
        console.print(f"[{style}]exit {DRIFT_EXIT_CODE}[/]: drift is {result.status} (--fail-on)")
        raise typer.Exit(DRIFT_EXIT_CODE)


def register(app: typer.Typer) -> None:
    app.command()(monitor)

"""`retain train …`, `retain promote`, `retain report kpis`: the analysts' model lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from features.definitions import CHURN_FEATURES
from features.panel import split_columns
from features.settings import get_settings
from serving.cli.common import console, exit_on_bad_input
from serving.cli.data import load_from_options
from serving.cli.features import default_panel_path

train_app = typer.Typer(help="Train, evaluate, log and register models.", no_args_is_help=True)
report_app = typer.Typer(help="Business reports.", no_args_is_help=True)

PanelOption = Annotated[
    Path | None, typer.Option(help="Panel from `retain features build` (default DATA_DIR).")
]
SeedOption = Annotated[int, typer.Option(help="Random seed; same seed, same model.")]


def read_panel(path: Path | None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The panel, its feature columns and which of them are categorical."""
    target = path or default_panel_path()
    if not target.exists():
        console.print(f"[red]error[/]: {target}: no panel; run `retain features build` first")
        raise typer.Exit(1)
    panel = pd.read_parquet(target)
    features, _ = split_columns(panel)
    categorical = [c for c in features if pd.api.types.is_string_dtype(panel[c])]
    return panel, features, categorical


def _progress(message: str) -> None:
    console.print(f"  · {message}")


@train_app.command("churn")
def train_churn_command(
    panel: PanelOption = None,
    tune: Annotated[int, typer.Option(min=0, help="Optuna trials (0: defaults).")] = 0,
    seed: SeedOption = 0,
) -> None:
    """Train the churn-risk model (LightGBM, calibrated) against RFM and logistic baselines."""
    from training.pipeline import ChurnEvaluation, train_churn

    frame, features, categorical = read_panel(panel)
    result = train_churn(
        frame,
        feature_columns=features,
        categorical=categorical,
        feature_set=CHURN_FEATURES.id,
        seed=seed,
        tune_trials=tune,
        num_threads=2,
        progress=_progress,
    )
    console.print(result.evaluation.metrics.round(4).to_string())
    if isinstance(result.evaluation, ChurnEvaluation) and len(result.evaluation.margins):
        console.print("margin of LightGBM over the baselines (paired bootstrap 95 % CI):")
        console.print(result.evaluation.margins.round(4).to_string(index=False))
    console.print(
        f"registered churn-risk v{result.run.version} {result.run.aliases}; "
        f"report: {result.report_path}"
    )


@train_app.command("clv")
def train_clv_command(panel: PanelOption = None, seed: SeedOption = 0) -> None:
    """Train the 12-month CLV model (LightGBM) against an average-based CLV baseline."""
    from training.pipeline import train_clv

    frame, features, categorical = read_panel(panel)
    result = train_clv(
        frame,
        feature_columns=features,
        categorical=categorical,
        feature_set=CHURN_FEATURES.id,
        seed=seed,
        num_threads=2,
        progress=_progress,
    )
    console.print(result.evaluation.metrics.round(3).to_string())
    console.print(
        f"registered clv v{result.run.version} {result.run.aliases}; report: {result.report_path}"
    )


@train_app.command("next-offer")
def train_next_offer_command(
    directory: Annotated[
        Path | None, typer.Argument(help="Data directory (default DATA_DIR/demo).")
    ] = None,
    goal_event: Annotated[
        str | None,
        typer.Option(
            help="Judge offers by this event type within --window days "
            "(default: retention over the churn horizon)."
        ),
    ] = None,
    window: Annotated[int | None, typer.Option(min=1, help="Goal window in days.")] = None,
    seed: SeedOption = 0,
) -> None:
    """Train the next-offer policy (five uplift learners compared) from the logged offer history."""
    from training.next_offer import Goal
    from training.offer_pipeline import train_next_offer
    from training.registry import load_champion

    settings = get_settings()
    source = directory or settings.data_dir / "demo"
    with exit_on_bad_input():
        dataset = load_from_options(source, None, None, None, None)
    if not dataset.offers:
        console.print(f"[red]error[/]: {source}: no offers catalog (offers.yaml or offers.csv)")
        raise typer.Exit(1)
    try:
        clv_model = load_champion("clv").model
    except LookupError as exc:
        console.print(f"[red]error[/]: {exc}; run `retain train clv` first")
        raise typer.Exit(1) from None
    truth_path = source / "ground_truth.parquet"
    goal = Goal(event_type=goal_event, window_days=window or settings.churn_horizon_days)
    result = train_next_offer(
        dataset.customers,
        dataset.events,
        dataset.offers,
        clv_model.predict,
        goal=goal,
        truth=pd.read_parquet(truth_path) if truth_path.exists() else None,
        seed=seed,
        out_dir=settings.data_dir / "reports" / "next-offer",
        progress=_progress,
    )
    values = result.reports[result.learner].values
    for name, value in values.items():
        console.print(f"  {name:<12} DR {value.dr:8.2f}  [{value.dr_low:.2f}, {value.dr_high:.2f}]")
    if result.oracle is not None:
        console.print(
            f"  share of oracle value {result.oracle['share_of_oracle']:.1%}, "
            f"gain over best single offer {result.oracle['gain_over_best_single']:.1%}"
        )
    assert result.run is not None
    console.print(
        f"registered next-offer v{result.run.version} {result.run.aliases} "
        f"({result.learner.upper()}-learner); report: {result.report_path}"
    )


def promote(
    model: Annotated[str, typer.Argument(help="Registered model: churn-risk, clv, next-offer.")],
    force: Annotated[bool, typer.Option(help="Promote even if not better (logged).")] = False,
    panel: PanelOption = None,
) -> None:
    """Move `champion` to the challenger if it is at least as good on the same latest holdout."""
    from training.registry import promote as promote_model

    frame = read_panel(panel)[0] if (panel or default_panel_path()).exists() else None
    try:
        decision = promote_model(model, force=force, panel=frame)
    except LookupError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(1) from None
    console.print(decision.reason)
    if not decision.promoted:
        raise typer.Exit(1)


@report_app.command("kpis")
def report_kpis(
    directory: Annotated[Path | None, typer.Argument(help="Data directory.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default DATA_DIR/kpis).")
    ] = None,
) -> None:
    """Retention, churn, NPS, CSAT and CLTV by month, segment and cohort (CSV and plots)."""
    from training.kpis import kpis

    with exit_on_bad_input():
        dataset = load_from_options(directory, None, None, None, None)
    table = kpis(dataset.customers, dataset.events, horizon_days=get_settings().churn_horizon_days)
    target = out or get_settings().data_dir / "kpis"
    target.mkdir(parents=True, exist_ok=True)
    table.to_csv(target / "kpis.csv", index=False)
    overall = table[table["dimension"] == "all"].pivot_table(
        index="period", columns="metric", values="value"
    )
    console.print(overall.tail(6).round(3).to_string())
    console.print(f"-> {target / 'kpis.csv'}")


def register(app: typer.Typer) -> None:
    from serving.cli import features

    app.add_typer(features.app, name="features")
    app.add_typer(train_app, name="train")
    app.command()(promote)
    app.add_typer(report_app, name="report")

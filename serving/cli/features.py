"""`retain features build`: the point-in-time training panel, written to Parquet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from features.definitions import CHURN_FEATURES
from features.engine import Engine
from features.io import Dataset
from features.panel import build_panel, monthly_cutoffs
from features.settings import get_settings
from serving.cli.common import console, exit_on_bad_input
from serving.cli.data import load_from_options

app = typer.Typer(
    help="Feature engine: point-in-time features and training panels.", no_args_is_help=True
)

DataDir = Annotated[
    Path | None, typer.Argument(help="Directory with customers, events (and offers) files.")
]


def default_panel_path() -> Path:
    return get_settings().data_dir / "panel.parquet"


CUTOFFS_PER_SCAN = 6


def panel_from_dataset(
    dataset: Dataset, *, cutoffs: int, horizon_days: int, engine_name: str = "duckdb"
) -> pd.DataFrame:
    """Build the panel a few cutoffs at a time: one scan serves a whole batch of cutoffs, and
    the batches let long builds show progress."""
    engine: Engine | None = None
    if engine_name == "spark":
        from pyspark.sql import SparkSession

        from features.engine import SparkEngine

        spark = SparkSession.builder.master("local[*]").appName("retain").getOrCreate()
        engine = SparkEngine(spark)
    stamps = monthly_cutoffs(dataset.events, cutoffs, horizon_days)
    parts = []
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} cutoffs"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("building panel", total=len(stamps))
        for start in range(0, len(stamps), CUTOFFS_PER_SCAN):
            batch = stamps[start : start + CUTOFFS_PER_SCAN]
            parts.append(
                build_panel(
                    dataset.events,
                    dataset.customers,
                    batch,
                    horizon_days=horizon_days,
                    engine=engine,
                )
            )
            progress.advance(task, len(batch))
    return pd.concat(parts, ignore_index=True)


@app.command()
def build(
    directory: DataDir = None,
    customers: Annotated[Path | None, typer.Option(help="Customers file.")] = None,
    events: Annotated[Path | None, typer.Option(help="Events file.")] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column-mapping YAML.")] = None,
    cutoffs: Annotated[
        int, typer.Option(min=1, help="Monthly cutoffs, latest complete first.")
    ] = 12,
    horizon: Annotated[int | None, typer.Option(min=1, help="Churn horizon H in days.")] = None,
    engine: Annotated[
        str, typer.Option(help="'duckdb' (in-process) or 'spark' (local).")
    ] = "duckdb",
    out: Annotated[
        Path | None, typer.Option(help="Panel Parquet (default DATA_DIR/panel.parquet).")
    ] = None,
) -> None:
    """Build the training panel: features and labels per (customer, monthly cutoff)."""
    horizon_days = horizon or get_settings().churn_horizon_days
    with exit_on_bad_input():
        dataset = load_from_options(directory, customers, events, None, mapping)
    started = time.perf_counter()
    try:
        panel = panel_from_dataset(
            dataset, cutoffs=cutoffs, horizon_days=horizon_days, engine_name=engine
        )
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(1) from None
    target = out or default_panel_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    panel.to_parquet(target, index=False)
    console.print(
        f"panel {CHURN_FEATURES.id}: {len(panel):,} rows x {panel.shape[1]} columns, "
        f"{panel['cutoff'].nunique()} cutoffs, churn rate {panel['churned'].mean():.1%} "
        f"in {time.perf_counter() - started:.1f}s -> {target}"
    )

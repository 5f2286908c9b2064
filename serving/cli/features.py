"""`retain features build`: the point-in-time training panel, written to Parquet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from features.definitions import CHURN_FEATURES
from features.engine import Engine
from features.io import Dataset
from features.panel import PanelWritten, monthly_cutoffs, write_panel
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


def panel_engine(name: str) -> Engine | None:
    """The engine named on the command line (None: the default DuckDB engine)."""
    if name != "spark":
        return None
    from pyspark.sql import SparkSession

    from features.engine import SparkEngine

    spark = SparkSession.builder.master("local[*]").appName("retain").getOrCreate()
    return SparkEngine(spark)


def write_panel_of(
    dataset: Dataset, target: Path, *, cutoffs: int, horizon_days: int, engine_name: str = "duckdb"
) -> PanelWritten:
    """Write the panel of `dataset` to `target` cutoff by cutoff, with a progress bar: one pass
    serves every cutoff, and only one cutoff's rows are held at a time."""
    engine = panel_engine(engine_name)
    stamps = monthly_cutoffs(dataset.events, cutoffs, horizon_days)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} cutoffs"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("building panel", total=len(stamps))
        return write_panel(
            dataset.events,
            dataset.customers,
            stamps,
            target,
            on_cutoff=lambda _: progress.advance(task),
            horizon_days=horizon_days,
            engine=engine,
        )


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
    target = out or default_panel_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = write_panel_of(
            dataset, target, cutoffs=cutoffs, horizon_days=horizon_days, engine_name=engine
        )
    except ValueError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"panel {CHURN_FEATURES.id}: {written.rows:,} rows x {written.columns} columns, "
        f"{written.cutoffs} cutoffs, churn rate {written.churned / max(written.rows, 1):.1%} "
        f"in {time.perf_counter() - started:.1f}s -> {target}"
    )

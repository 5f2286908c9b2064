"""Data commands: check a data set against the contract; generate the demo world."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from features.io import Dataset, OnError, load_dataset, load_directory, write_quarantine
from features.settings import get_settings
from serving.cli.common import console, exit_on_bad_input


def load_from_options(
    directory: Path | None,
    customers: Path | None,
    events: Path | None,
    offers: Path | None,
    mapping: Path | None,
    on_error: OnError = "raise",
) -> Dataset:
    """A data set named either by directory or by its files (the CLI's two ways)."""
    if directory is not None:
        return load_directory(directory, mapping_path=mapping, on_error=on_error)
    if customers is None or events is None:
        raise typer.BadParameter("give a directory, or both --customers and --events")
    return load_dataset(customers, events, offers, mapping_path=mapping, on_error=on_error)


def validate(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Directory holding customers, events and offers files."),
    ] = None,
    customers: Annotated[Path | None, typer.Option(help="Customers file (CSV/Parquet).")] = None,
    events: Annotated[Path | None, typer.Option(help="Events file (CSV/Parquet).")] = None,
    offers: Annotated[Path | None, typer.Option(help="Offers catalog (YAML/CSV).")] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="YAML {table: {their_column: contract_column}}.")
    ] = None,
    on_error: Annotated[
        OnError, typer.Option(help="'raise': stop at bad rows; 'quarantine': set them aside.")
    ] = "raise",
    quarantine_dir: Annotated[
        Path | None,
        typer.Option(help="Where quarantined rows go (default: DATA_DIR/quarantine)."),
    ] = None,
) -> None:
    """Check a data set against the data contract; exit 1 naming file, row and column of each."""
    started = time.perf_counter()
    with exit_on_bad_input():
        dataset = load_from_options(directory, customers, events, offers, mapping, on_error)
    table = Table("table", "valid rows", "rejected", title="Data contract check")
    for name, valid in (("customers", dataset.customers), ("events", dataset.events)):
        table.add_row(name, f"{len(valid):,}", f"{len(dataset.rejected.get(name, [])):,}")
    table.add_row("offers", str(len(dataset.offers)), "0")
    console.print(table)
    if dataset.rejected:
        target = quarantine_dir or get_settings().data_dir / "quarantine"
        for name, path in write_quarantine(dataset, target).items():
            console.print(
                f"[yellow]quarantined[/] {len(dataset.rejected[name]):,} {name} rows -> {path}"
            )
    console.print(f"ok in {time.perf_counter() - started:.1f}s")


def demo_data(
    customers: Annotated[int, typer.Option(min=10, help="Number of customers.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same world.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: DATA_DIR/demo).")
    ] = None,
    fmt: Annotated[
        Literal["parquet", "csv"], typer.Option("--format", help="File format.")
    ] = "parquet",
) -> None:
    """Generate the demo world: customers, events, offers and the ground-truth effects."""
    from features.demo import generate_world

    target = out or get_settings().data_dir / "demo"
    started = time.perf_counter()
    with console.status(f"Simulating {customers:,} customers…"):
        world = generate_world(customers, seed)
        paths = world.write(target, fmt)
    console.print(
        f"{len(world.customers):,} customers, {len(world.events):,} events, "
        f"{len(world.offers)} offers in {time.perf_counter() - started:.1f}s"
    )
    for name, path in paths.items():
        console.print(f"  {name}: {path}")


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command("demo-data")(demo_data)

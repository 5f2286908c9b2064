"""`retain demo`: the main job end to end on the embedded default.

Each stage is the same code the individual commands run; the demo only chains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.cli.common import console
from serving.cli.data import demo_data, validate


def demo(
    customers: Annotated[int, typer.Option(min=100, help="Customers in the demo world.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed of the demo world.")] = 0,
    out: Annotated[Path, typer.Option(help="Directory for the demo world.")] = Path("data/demo"),
) -> None:
    """Run the main job on the demo world: data, validation (more stages as they land)."""
    console.rule("1. demo world")
    demo_data(customers=customers, seed=seed, out=out, fmt="parquet")
    console.rule("2. data contract")
    validate(directory=out)


def register(app: typer.Typer) -> None:
    app.command()(demo)

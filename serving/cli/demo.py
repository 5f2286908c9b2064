"""`retain demo`: the main job end to end on the embedded default.

Each stage is the same code the individual commands run; the demo only chains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.settings import get_settings
from serving.cli.campaign import campaign
from serving.cli.common import console
from serving.cli.data import demo_data, validate
from serving.cli.features import build
from serving.cli.train import train_churn_command, train_clv_command, train_next_offer_command

# Enough monthly cutoffs that the CLV target (365 days ahead) has training cutoffs a year before
# its test cutoff.
DEMO_CUTOFFS = 24


def demo(
    customers: Annotated[int, typer.Option(min=1000, help="Customers in the demo world.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed of the demo world.")] = 0,
    budget: Annotated[float, typer.Option(help="Budget of the demo campaign.")] = 5_000,
) -> None:
    """Run the main job on the demo world: data -> features -> models -> MLflow -> offers."""
    data_dir: Path = get_settings().data_dir / "demo"
    console.rule("1/7 demo world")
    demo_data(customers=customers, seed=seed, out=data_dir, fmt="parquet")
    console.rule("2/7 data contract")
    validate(directory=data_dir)
    console.rule("3/7 features")
    build(directory=data_dir, cutoffs=DEMO_CUTOFFS)
    console.rule("4/7 churn-risk model")
    train_churn_command(seed=seed)
    console.rule("5/7 CLV model")
    train_clv_command(seed=seed)
    console.rule("6/7 next-offer policy")
    train_next_offer_command(directory=data_dir, seed=seed)
    console.rule("7/7 campaign")
    campaign(budget=budget, directory=data_dir)
    console.print(
        "Done. Browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
    )


def register(app: typer.Typer) -> None:
    app.command()(demo)

"""`retain demo`: the main job end to end on the embedded default.

Each stage is the same code the individual commands run; the demo only chains them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from features.settings import get_settings
from serving.cli.campaign import campaign
from serving.cli.common import console
from serving.cli.data import demo_data, validate
from serving.cli.features import build
from serving.cli.score import score
from serving.cli.train import train_churn_command, train_clv_command, train_next_offer_command

# Enough monthly cutoffs that the CLV target (365 days ahead) has training cutoffs a year before
# its test cutoff.
DEMO_CUTOFFS = 24


def demo(
    customers: Annotated[int, typer.Option(min=1000, help="Customers in the demo world.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed of the demo world.")] = 0,
    budget: Annotated[float, typer.Option(help="Budget of the demo campaign.")] = 5_000,
) -> None:
    """Run the main job on the demo world: data -> features -> models -> scores -> offers."""
    from features.engine import event_time_range

    data_dir: Path = get_settings().data_dir / "demo"
    console.rule("1/8 demo world")
    demo_data(customers=customers, seed=seed, out=data_dir, fmt="parquet")
    console.rule("2/8 data contract")
    validate(directory=data_dir)
    console.rule("3/8 features")
    build(directory=data_dir, cutoffs=DEMO_CUTOFFS)
    console.rule("4/8 churn-risk model")
    train_churn_command(seed=seed)
    console.rule("5/8 CLV model")
    train_clv_command(seed=seed)
    console.rule("6/8 next-offer policy")
    train_next_offer_command(directory=data_dir, seed=seed)
    console.rule("7/8 batch scores")
    # The day after the last event: every event counts. Stage 2 checked these files already.
    last = event_time_range(data_dir / "events.parquet")[1]
    score(
        as_of=(last.normalize() + pd.Timedelta(days=1)).to_pydatetime(),
        directory=data_dir,
        alias=None,
        threads=2,
        reasons="medium",
        check=False,
    )
    console.rule("8/8 campaign")
    campaign(budget=budget, directory=data_dir)
    console.print(
        "Done. Browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"
    )


def register(app: typer.Typer) -> None:
    app.command()(demo)

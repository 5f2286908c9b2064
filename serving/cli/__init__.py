"""`retain`: the analysts' entry point. Each sub-module adds the commands of one stage."""

from __future__ import annotations

import logging
import os
import warnings

import typer

from serving.cli import campaign, data, demo, monitor, score, serve, train

app = typer.Typer(
    name="retain",
    help="Retain: find the customers about to leave and the retention action worth making.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _quiet_libraries() -> None:
    """Keep MLflow's chatter (schema hints, download bars) out of the analysts' console."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")


data.register(app)
demo.register(app)
train.register(app)
campaign.register(app)
score.register(app)
monitor.register(app)
serve.register(app)

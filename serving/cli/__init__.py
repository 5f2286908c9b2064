"""`retain`: the analysts' entry point. Each sub-module adds the commands of one stage."""

from __future__ import annotations

import typer

from serving.cli import data, demo

app = typer.Typer(
    name="retain",
    help="Retain: find the customers about to leave and the retention action worth making.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data.register(app)
demo.register(app)

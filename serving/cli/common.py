"""What every command shares: the console, and turning bad input into a one-line exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from features.contract import ContractError, format_error

console = Console(stderr=True, highlight=False)
MAX_ERRORS_SHOWN = 50


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    """Bad input ends the command with exit 1 and one line per problem (file, row, column)."""
    try:
        yield
    except ContractError as exc:
        errors = exc.errors
        for _, error in errors.head(MAX_ERRORS_SHOWN).iterrows():
            console.print(f"[red]error[/]: {escape(format_error(error))}", soft_wrap=True)
        if len(errors) > MAX_ERRORS_SHOWN:
            console.print(f"… and {len(errors) - MAX_ERRORS_SHOWN} more errors")
        raise typer.Exit(1) from None

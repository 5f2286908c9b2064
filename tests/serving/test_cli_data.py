"""`retain validate`: exit codes and one line per problem naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from serving.cli import app

runner = CliRunner()


def write_events(directory: Path, amounts: list[str]) -> Path:
    pd.DataFrame({"customer_id": ["C1"], "signup_date": ["2024-01-01"]}).to_csv(
        directory / "customers.csv", index=False
    )
    pd.DataFrame(
        {
            "customer_id": ["C1"] * len(amounts),
            "timestamp": ["2025-01-01"] * len(amounts),
            "event_type": ["purchase"] * len(amounts),
            "amount": amounts,
        }
    ).to_csv(directory / "events.csv", index=False)
    return directory


def test_validate_exits_zero_on_good_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write_events(tmp_path, ["1", "2"]))])
    assert result.exit_code == 0, result.output
    assert "events" in result.output


def test_validate_exits_one_naming_file_row_and_column(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(write_events(tmp_path, ["1", "-2", "x"]))])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert lines == [
        "error: events.csv: row 2, column amount: negative amount -2.0 (must be >= 0)",
        "error: events.csv: row 3, column amount: not a number: x",
    ]


def test_validate_quarantines_on_request(tmp_path: Path) -> None:
    data = write_events(tmp_path, ["1", "-2"])
    result = runner.invoke(
        app,
        [
            "validate",
            str(data),
            "--on-error",
            "quarantine",
            "--quarantine-dir",
            str(tmp_path / "q"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "quarantined 1 events rows" in result.output
    assert len(pd.read_csv(tmp_path / "q" / "events.rejected.csv")) == 1


def test_validate_needs_directory_or_files() -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "give a directory" in result.output

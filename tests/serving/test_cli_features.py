"""`retain features build`: the panel file, written cutoff by cutoff."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from features.io import load_directory
from features.panel import build_panel, monthly_cutoffs
from features.settings import get_settings
from serving.cli import app
from tests.factories import random_world

runner = CliRunner()


def test_features_build_writes_the_panel(tmp_path: Path) -> None:
    customers, events = random_world(5)
    customers.to_parquet(tmp_path / "customers.parquet", index=False)
    events.to_parquet(tmp_path / "events.parquet", index=False)
    out = tmp_path / "out" / "panel.parquet"

    result = runner.invoke(
        app, ["features", "build", str(tmp_path), "--cutoffs", "3", "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert "3 cutoffs" in result.output
    data = load_directory(tmp_path)
    horizon = get_settings().churn_horizon_days
    expected = build_panel(
        data.events, data.customers, monthly_cutoffs(data.events, 3, horizon), horizon_days=horizon
    )
    assert len(expected) > 20
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)

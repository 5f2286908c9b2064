"""`retain monitor` on the small trained world: unchanged data, then data with drift injected.

The reference is the champion's training rows (the world's panel at the run's `train_cutoffs`);
the current data are the world's demo files, once as they are and once with every purchase four
times dearer and every customer moved to the `student` segment.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from scoring_world import World
from typer.testing import CliRunner

from features.panel import build_panel, monthly_cutoffs
from features.settings import get_settings
from serving.cli import app as cli
from serving.cli.monitor import DRIFT_EXIT_CODE, reference_rows
from training.registry import load_champion

DRIFTED = ("revenue_90d", "avg_purchase_90d", "segment")


@dataclass(frozen=True)
class Run:
    exit_code: int
    output: str
    data_dir: Path
    tracking_uri: str

    def report(self) -> dict[str, Any]:
        latest = (self.data_dir / "monitor" / "latest").read_text().strip()
        return json.loads((self.data_dir / "monitor" / latest / "drift.json").read_text())


@contextmanager
def environment(directory: Path, world: World | None) -> Iterator[tuple[Path, str]]:
    """Settings for the command: a data dir, and a copy of the world's MLflow store."""
    store = directory / "mlruns" / "mlflow.db"
    store.parent.mkdir(parents=True)
    if world is not None:
        shutil.copy(world.tracking_uri.removeprefix("sqlite:///"), store)
    tracking_uri = f"sqlite:///{store}"
    env = {
        "RETAIN_DATA_DIR": str(directory / "data"),
        "RETAIN_MLFLOW_TRACKING_URI": tracking_uri,
        "RETAIN_MLFLOW_ARTIFACT_ROOT": str(directory / "mlruns" / "artifacts"),
        "RETAIN_DATABASE_URL": f"sqlite:///{directory / 'retain.db'}",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            yield directory / "data", tracking_uri
        finally:
            get_settings.cache_clear()


def monitor(directory: Path, world: World, panel: Path, *args: str) -> Run:
    with environment(directory, world) as (data_dir, tracking_uri):
        data_dir.mkdir()
        shutil.copy(panel, data_dir / "panel.parquet")
        result = CliRunner().invoke(cli, ["monitor", *args])
    return Run(result.exit_code, result.output, data_dir, tracking_uri)


@pytest.fixture(scope="module")
def panel(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The panel the world's models were trained on, rebuilt the same way."""
    events, customers = world.dataset.events, world.dataset.customers
    path = tmp_path_factory.mktemp("panel") / "panel.parquet"
    build_panel(events, customers, monthly_cutoffs(events, 24)).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def unchanged(world: World, panel: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return monitor(
        tmp_path_factory.mktemp("unchanged"), world, panel, "--data", str(world.root / "demo")
    )


def test_monitor_compares_training_rows_with_active_customers(
    unchanged: Run, world: World, panel: Path
) -> None:
    assert unchanged.exit_code == 0, unchanged.output  # no --fail-on: exit 0 whatever the drift
    report = unchanged.report()
    champion = load_champion("churn-risk", tracking_uri=unchanged.tracking_uri)
    assert (report["model"], report["model_version"]) == ("churn-risk", str(champion.version))
    assert report["reference_cutoffs"] == champion.params["train_cutoffs"].split(",")
    assert report["reference_is_training_panel"] is True
    training_rows = reference_rows(pd.read_parquet(panel), champion.params["train_cutoffs"])
    assert report["n_reference"] == len(training_rows)
    last_event = world.dataset.events["timestamp"].max()
    assert report["as_of"] == str((last_event.normalize() + pd.Timedelta(days=1)).date())
    assert {f["feature"] for f in report["features"]} == set(champion.model.feature_names_in_)
    assert report["score"]["feature"] == "churn_risk"
    assert f"drift {report['status']}" in unchanged.output
    run_dir = unchanged.data_dir / "monitor" / report["as_of"]
    assert {p.name for p in run_dir.iterdir()} == {"drift.json", "drift.md", "psi.png"}


def test_monitor_logs_a_run_tagged_with_the_model_version(unchanged: Run) -> None:
    report = unchanged.report()
    client = MlflowClient(tracking_uri=unchanged.tracking_uri, registry_uri=unchanged.tracking_uri)
    experiment = client.get_experiment_by_name("monitoring")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == report["mlflow_run_id"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_version"] == report["model_version"]
    assert run.data.tags["drift.status"] == report["status"]
    assert run.data.metrics["max_psi"] == pytest.approx(report["max_psi"])
    assert run.data.metrics["psi_score"] == pytest.approx(report["score"]["psi"])
    top = report["features"][0]
    assert run.data.metrics[f"psi.{top['feature']}"] == pytest.approx(top["psi"])
    assert run.data.metrics["n_current"] == report["n_current"]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert logged == {"drift/drift.json", "drift/drift.md", "drift/psi.png"}


def test_monitor_finds_injected_drift_critical_and_fails_on_it(
    unchanged: Run, world: World, panel: Path, tmp_path: Path
) -> None:
    drifted = tmp_path / "drifted"
    drifted.mkdir()
    events = pd.read_parquet(world.root / "demo" / "events.parquet")
    purchases = (events["event_type"] == "purchase").to_numpy()
    events.loc[purchases, "amount"] = events.loc[purchases, "amount"] * 4
    events.to_parquet(drifted / "events.parquet", index=False)
    customers = pd.read_parquet(world.root / "demo" / "customers.parquet")
    customers["segment"] = "student"
    customers.to_parquet(drifted / "customers.parquet", index=False)

    run = monitor(tmp_path / "run", world, panel, "--data", str(drifted), "--fail-on", "critical")

    assert run.exit_code == DRIFT_EXIT_CODE, run.output
    report = run.report()
    assert report["status"] == "critical"
    before = {f["feature"]: f for f in unchanged.report()["features"]}
    after = {f["feature"]: f for f in report["features"]}
    for feature in DRIFTED:
        assert before[feature]["status"] != "critical", before[feature]
        assert after[feature]["status"] == "critical", after[feature]
        assert after[feature]["psi"] > before[feature]["psi"]
    assert report["features"][0]["status"] == "critical"
    markdown = (run.data_dir / "monitor" / report["as_of"] / "drift.md").read_text()
    assert "**segment**" in markdown.split("## What moved")[1]


def test_monitor_without_a_panel_exits_1(tmp_path: Path) -> None:
    with environment(tmp_path, None):
        result = CliRunner().invoke(cli, ["monitor"])
    assert result.exit_code == 1
    assert "no panel; run `retain features build` first" in result.output


def test_reference_rows_are_the_training_cutoffs_only() -> None:
    panel = pd.DataFrame(
        {
            "customer_id": ["a", "b", "a", "b", "a"],
            "cutoff": pd.to_datetime(
                ["2025-01-01", "2025-01-01", "2025-02-01", "2025-02-01", "2025-06-01"]
            ),
        }
    )
    chosen = reference_rows(panel, "2025-01-01,2025-02-01")
    assert (
        chosen["cutoff"].dt.strftime("%Y-%m-%d").tolist() == ["2025-01-01"] * 2 + ["2025-02-01"] * 2
    )
    with pytest.raises(ValueError, match="lacks the model's training cutoff"):
        reference_rows(panel, "2025-01-01,2025-03-01")
    with pytest.raises(ValueError, match="no training cutoffs"):
        reference_rows(panel, "")

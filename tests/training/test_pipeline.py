"""The MLflow lifecycle end to end, on a temporary SQLite tracking store.

The tests share one store (creating an MLflow database takes seconds) and keep apart by using
different registered model names.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import CATEGORICAL, FEATURE_SET, FEATURES
from mlflow import MlflowClient

from training.pipeline import data_fingerprint, promote, train_churn, train_clv
from training.registry import load_champion

SMALL = {"n_estimators": 80, "num_leaves": 15}
WEAK = ["noise", "n_offer_sent_90d"]  # no signal: a clearly worse challenger


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", root


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def test_train_churn_lifecycle_versions_aliases_promotion(
    panel: pd.DataFrame, store: tuple[str, Path], tmp_path: Path
) -> None:
    tracking_uri, root = store
    first = train_churn(
        panel,
        feature_columns=FEATURES,
        categorical=CATEGORICAL,
        feature_set=FEATURE_SET,
        tracking_uri=tracking_uri,
        out_dir=tmp_path / "report1",
        params=SMALL,
    )
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    assert first.run.version == 1
    assert _aliases(client, "churn-risk") == {"champion": "1", "challenger": "1"}
    run = client.get_run(first.run.run_id)
    assert run.data.tags["feature_set"] == FEATURE_SET
    assert run.data.tags["data_fingerprint"] == data_fingerprint(panel)
    assert run.data.tags["test_cutoff"] == "2024-04-01"
    assert run.data.metrics["model.roc_auc"] > run.data.metrics["logistic.roc_auc"]
    assert "group.language.fr.roc_auc" in run.data.metrics
    margin = run.data.metrics["margin.logistic.roc_auc.difference"]
    assert run.data.metrics["margin.logistic.roc_auc.ci_low"] < margin
    assert margin < run.data.metrics["margin.logistic.roc_auc.ci_high"]
    assert run.data.metrics["margin.clear"] in (0.0, 1.0)
    assert run.data.params["horizon_days"] == "90"
    logged = {a.path for a in client.list_artifacts(first.run.run_id, "evaluation")}
    assert {
        "evaluation/report.md",
        "evaluation/calibration.png",
        "evaluation/margins.csv",
    } <= logged
    assert (tmp_path / "report1" / "roc.png").stat().st_size > 0
    # Artifacts live next to the temporary store, not in the settings' artifact root.
    assert (root / "mlruns" / "artifacts" / "churn-risk").is_dir()

    second = train_churn(
        panel,
        feature_columns=WEAK,
        feature_set=FEATURE_SET,
        tracking_uri=tracking_uri,
        out_dir=tmp_path / "report2",
        params={"n_estimators": 20},
        group_columns=(),
    )

    assert second.run.version == 2
    assert _aliases(client, "churn-risk") == {"champion": "1", "challenger": "2"}

    refused = promote("churn-risk", tracking_uri=tracking_uri)

    assert not refused.promoted
    assert "ROC-AUC lower" in refused.reason
    assert _aliases(client, "churn-risk")["champion"] == "1"

    forced = promote("churn-risk", force=True, tracking_uri=tracking_uri)

    assert forced.promoted and forced.forced
    assert _aliases(client, "churn-risk")["champion"] == "2"
    assert client.get_model_version("churn-risk", "2").tags["promotion"] == "forced"
    assert client.get_run(second.run.run_id).data.tags["promotion"] == "forced"

    mlflow.set_tracking_uri(tracking_uri)
    pyfunc = mlflow.pyfunc.load_model("models:/churn-risk@champion")
    p = np.asarray(pyfunc.predict(panel[WEAK].head(50)))
    assert p.shape == (50,)
    assert ((p >= 0) & (p <= 1)).all()

    loaded = load_champion("churn-risk", tracking_uri=tracking_uri)
    assert loaded.version == 2
    assert loaded.feature_set == FEATURE_SET
    assert list(loaded.model.feature_names_in_) == WEAK
    raw = loaded.model.booster_.predict(loaded.model.encode(panel[WEAK].head(50)))
    np.testing.assert_allclose(loaded.model.calibrator_.predict(raw), p)


def test_promote_different_holdouts_refuses_then_reevaluates(
    panel: pd.DataFrame, store: tuple[str, Path], tmp_path: Path
) -> None:
    tracking_uri, _ = store
    name = "churn-holdouts"
    earlier = panel[panel["cutoff"] < pd.Timestamp("2024-04-01")]
    common = {
        "feature_columns": FEATURES,
        "categorical": CATEGORICAL,
        "feature_set": FEATURE_SET,
        "tracking_uri": tracking_uri,
        "params": SMALL,
        "group_columns": (),
        "model_name": name,
    }
    train_churn(earlier, out_dir=tmp_path / "a", **common)  # type: ignore[arg-type]
    train_churn(panel, out_dir=tmp_path / "b", **common)  # type: ignore[arg-type]

    refused = promote(name, tracking_uri=tracking_uri)

    assert not refused.promoted
    assert "not comparable" in refused.reason and "2024-03-01" in refused.reason

    decision = promote(name, panel=panel, tracking_uri=tracking_uri, ece_tolerance=0.05)

    assert "re-evaluated both on cutoff 2024-04-01" in decision.reason
    assert "champion.model.roc_auc" in decision.comparison
    assert decision.promoted == (
        decision.comparison["challenger.model.roc_auc"]
        >= decision.comparison["champion.model.roc_auc"]
        and decision.comparison["challenger.model.ece"]
        <= decision.comparison["champion.model.ece"] + 0.05
    )


def test_train_clv_registers_champion_and_pyfunc_predicts_revenue(
    panel: pd.DataFrame, store: tuple[str, Path], tmp_path: Path
) -> None:
    tracking_uri, _ = store
    result = train_clv(
        panel,
        feature_columns=FEATURES,
        categorical=CATEGORICAL,
        feature_set=FEATURE_SET,
        tracking_uri=tracking_uri,
        out_dir=tmp_path / "clv",
        params=SMALL,
    )
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    assert result.run.version == 1
    assert _aliases(client, "clv") == {"champion": "1", "challenger": "1"}
    run = client.get_run(result.run.run_id)
    assert run.data.metrics["model.mae"] < run.data.metrics["average_clv.mae"]
    assert "clv_deciles.png" in result.report_path.read_text()

    mlflow.set_tracking_uri(tracking_uri)
    predicted = np.asarray(
        mlflow.pyfunc.load_model("models:/clv@champion").predict(panel[FEATURES].head(20))
    )
    assert predicted.shape == (20,)
    assert (predicted > 0).all()
    same = promote("clv", tracking_uri=tracking_uri)
    assert not same.promoted and same.reason == "challenger is already champion"


def test_load_champion_unknown_model_raises(store: tuple[str, Path]) -> None:
    tracking_uri, _ = store
    with pytest.raises(LookupError, match="no 'champion' version of model 'nope'"):
        load_champion("nope", tracking_uri=tracking_uri)


def test_compute_data_fingerprint_changes_with_content(panel: pd.DataFrame) -> None:
    changed = panel.copy()
    changed.loc[0, "noise"] += 1.0

    assert data_fingerprint(panel) == data_fingerprint(panel.copy())
    assert data_fingerprint(panel) != data_fingerprint(changed)
    assert data_fingerprint(panel) != data_fingerprint(panel.drop(columns="noise"))

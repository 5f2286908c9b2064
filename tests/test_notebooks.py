"""The analyst notebooks run top to bottom on a small demo world, in the venv's own kernel.

They run in order (03 needs the `clv` champion that 02 registers) against a temporary data
directory and MLflow store named through the `RETAIN_*` environment, the way an analyst would point
them elsewhere. Their size parameters are overridden the way papermill does it: a cell inserted
right after the one tagged `parameters`. A last cell, added here too, prints the results the
assertions check as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient
from nbformat import NotebookNode

from training.kpis import METRICS as KPI_METRICS

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPLORE = "01_explore_interactions_and_kpis.ipynb"
TRAIN = "02_train_and_compare_models.ipynb"
OFFERS = "03_evaluate_offer_policy.ipynb"
# Training the next-offer learners dominates the run time, and it grows with the customers.
CUSTOMERS = 1_000
SMALL = {
    EXPLORE: f"CUSTOMERS = {CUSTOMERS}",
    # Smaller churn models: the notebook's code path is the same, its boosting rounds fewer.
    TRAIN: f'CUSTOMERS = {CUSTOMERS}\nCHURN_PARAMS = {{"n_estimators": 40, "num_leaves": 7}}',
    OFFERS: f"CUSTOMERS = {CUSTOMERS}",
}
RESULTS = {
    EXPLORE: """{
    "customers": len(customers),
    "dataset": str(DATASET.resolve()),
    "kpi_metrics": sorted(table["metric"].unique()),
    "kpi_dimensions": sorted(table["dimension"].unique()),
    "cohort_rows": len(curves),
}""",
    TRAIN: """{
    "tracking_uri": TRACKING_URI,
    "churn_run": churn.run.run_id,
    "churn_metrics": churn.evaluation.metrics.to_dict(orient="index"),
    "clv_metrics": clv.evaluation.metrics.to_dict(orient="index"),
    "runs_compared": len(churn_table),
    "promoted": decision.promoted,
    "champion_before": decision.champion_before,
    "challenger": decision.challenger,
    "reason": decision.reason,
}""",
    OFFERS: """{
    "learner": result.learner,
    "run": result.run.run_id,
    "values": {name: vars(value) for name, value in report.values.items()},
    "auuc": report.auuc,
    "oracle": result.oracle,
}""",
}


def _prepare(name: str) -> NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    where = next(
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    injected = nbformat.v4.new_code_cell(SMALL[name], metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(where + 1, injected)
    check = f"import json\nprint(json.dumps({RESULTS[name]}, default=str))"
    notebook.cells.append(nbformat.v4.new_code_cell(check))
    return notebook


def _results(notebook: NotebookNode) -> dict[str, Any]:
    text = "".join(
        o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream"
    )
    parsed: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return parsed


def _figures(notebook: NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("notebooks")
    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    runs: dict[str, Any] = {"root": root, "tracking_uri": tracking_uri}
    with pytest.MonkeyPatch.context() as patch:
        # The kernel inherits this environment; the notebooks read it through get_settings().
        patch.setenv("RETAIN_DATA_DIR", str(root / "data"))
        patch.setenv("RETAIN_MLFLOW_TRACKING_URI", tracking_uri)
        patch.setenv("RETAIN_MLFLOW_ARTIFACT_ROOT", str(root / "mlruns" / "artifacts"))
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # mlflow.set_*_uri export these; earlier tests in this process leave their stores here.
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        for name in (EXPLORE, TRAIN, OFFERS):
            notebook = _prepare(name)
            client = NotebookClient(
                notebook,
                timeout=1200,  # per cell; a guard against a hung kernel, not a budget
                kernel_name="python3",
                resources={"metadata": {"path": str(NOTEBOOKS)}},
            )
            client.execute()  # raises CellExecutionError, with the cell and traceback, on error
            runs[name] = notebook
    return runs


def test_list_every_notebook_for_execution() -> None:
    # A notebook added to notebooks/ must be added here too, or CI would not run it.
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == [EXPLORE, TRAIN, OFFERS]


@pytest.mark.parametrize("name", [EXPLORE, TRAIN, OFFERS])
def test_store_notebook_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
def test_execute_explore_notebook_on_demo_world(executed: dict[str, Any]) -> None:
    notebook = executed[EXPLORE]
    results = _results(notebook)
    # The demo world was generated with the injected size, under the temporary data directory.
    assert results["customers"] == CUSTOMERS
    assert Path(results["dataset"]) == executed["root"] / "data" / "demo"
    assert set(results["kpi_metrics"]) == set(KPI_METRICS)
    assert results["kpi_dimensions"] == ["all", "cohort", "segment"]
    assert results["cohort_rows"] > 1
    # Event mix, cohorts, KPIs overall and by segment.
    assert _figures(notebook) >= 4


@pytest.mark.slow
def test_execute_training_notebook_logs_to_the_configured_store(executed: dict[str, Any]) -> None:
    notebook = executed[TRAIN]
    results = _results(notebook)
    assert results["tracking_uri"] == executed["tracking_uri"]
    uri = executed["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process-wide registry
    # What the notebook showed is what MLflow holds.
    logged = client.get_run(results["churn_run"]).data.metrics
    for model in ("model", "rfm", "logistic"):
        shown = results["churn_metrics"][model]["roc_auc"]
        assert shown == pytest.approx(logged[f"{model}.roc_auc"])
        assert 0.5 < shown <= 1.0
    assert {"model", "average_clv"} <= set(results["clv_metrics"])
    # Two churn runs (the default and the challenger variant) went through the gate.
    assert results["runs_compared"] == 2
    churn = client.get_registered_model("churn-risk")
    assert set(churn.aliases) == {"champion", "challenger"}
    # The first run became champion; the variant, registered second, is the challenger.
    assert (results["champion_before"], results["challenger"]) == (1, 2)
    promoted_to = results["challenger"] if results["promoted"] else results["champion_before"]
    assert str(churn.aliases["champion"]) == str(promoted_to), results["reason"]
    assert "ROC-AUC" in results["reason"]
    assert str(client.get_registered_model("clv").aliases["champion"]) == "1"
    # ROC, calibration, lift, group AUC, CLV deciles and the run comparison.
    assert _figures(notebook) >= 6


@pytest.mark.slow
def test_execute_offer_notebook_evaluates_policies(executed: dict[str, Any]) -> None:
    notebook = executed[OFFERS]
    results = _results(notebook)
    values = results["values"]
    assert set(values) == {"learned", "logging", "random", "best_single", "no_offers"}
    for value in values.values():
        assert value["dr_low"] <= value["dr"] <= value["dr_high"]
        assert value["ips_low"] <= value["ips"] <= value["ips_high"]
    assert results["auuc"] and all(isinstance(a, float) for a in results["auuc"].values())
    oracle = results["oracle"]
    assert oracle is not None and oracle["oracle_value"] > 0
    assert oracle["policy_value"] <= oracle["oracle_value"]
    uri = executed["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process-wide registry
    run = client.get_run(results["run"])
    assert run.data.params["learner"] == results["learner"]
    assert run.data.metrics["policy.learned_dr"] == pytest.approx(values["learned"]["dr"])
    # Qini curves, policy values, the oracle comparison and the logged policy-value plot.
    assert _figures(notebook) >= 4

"""`GET /v1/monitor/drift`: the latest `retain monitor` result, as the command writes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features.settings import ApiKey, Settings
from serving.app import create_app
from serving.cli.monitor import point_latest, report_document, write_report
from serving.errors import PROBLEM_JSON
from serving.routes.monitor import LATEST, monitor_root
from training.drift import DriftResult, compare_frames
from training.registry import LoadedModel

KEYS = {"crm": "crm-9c1e4b7a", "admin": "admin-5d2f8e3c"}


def _as(scope: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[scope]}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'retain.db'}",
        data_dir=tmp_path / "data",
        # no tracking store: the service starts without models, which this route does not need
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}",
        api_keys=[ApiKey(name=s, key=k, scopes=[s]) for s, k in KEYS.items()],
        feature_refresh_seconds=0.0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def drift_result(shift: float) -> DriftResult:
    rng = np.random.default_rng(0)
    n = 2000
    reference = pd.DataFrame(
        {"tenure_days": rng.gamma(2, 300, n), "segment": rng.choice(["retail", "business"], n)}
    )
    current = pd.DataFrame(
        {
            "tenure_days": rng.gamma(2, 300, n) + shift,
            "segment": rng.choice(["retail", "business"], n),
        }
    )
    scores = rng.random(n)
    return compare_frames(
        reference,
        current,
        features=["tenure_days", "segment"],
        reference_scores=scores,
        current_scores=np.clip(scores + shift / 3000, 0, 1),
    )


def write_run(settings: Settings, result: DriftResult, as_of: str, version: int) -> dict:
    model = LoadedModel(
        model=None,
        name="churn-risk",
        version=version,
        alias="champion",
        run_id=f"run-{version}",
        feature_set="churn_features:2",
    )
    document = report_document(
        result,
        model=model,
        as_of=pd.Timestamp(as_of),
        reference_cutoffs=["2025-01-01", "2025-02-01"],
        reference_total=result.n_reference,
        same_panel=True,
        latest_event=pd.Timestamp(as_of) - pd.Timedelta(hours=3),
        mlflow_run_id=f"monitoring-{version}",
    )
    run_dir = monitor_root(settings) / as_of
    write_report(run_dir, result, document, context={"model": f"churn-risk v{version}"})
    point_latest(monitor_root(settings), run_dir)
    return document


def test_get_drift_returns_the_latest_run(client: TestClient, settings: Settings) -> None:
    write_run(settings, drift_result(shift=0.0), "2026-08-01", version=2)
    shifted = drift_result(shift=400.0)
    written = write_run(settings, shifted, "2026-09-01", version=3)

    response = client.get("/v1/monitor/drift", headers=_as("admin"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["as_of"] == "2026-09-01"
    assert (body["model"], body["model_version"], body["model_alias"]) == (
        "churn-risk",
        "3",
        "champion",
    )
    assert body["mlflow_run_id"] == "monitoring-3"
    assert body["status"] == shifted.status == "critical"
    assert body["max_psi"] == pytest.approx(shifted.max_psi)
    assert body["noise_floor"] == pytest.approx(shifted.noise_floor)
    assert body["thresholds"] == {"warning": 0.1, "critical": 0.25}
    assert [f["feature"] for f in body["features"]] == [d.feature for d in shifted.features]
    tenure = next(f for f in body["features"] if f["feature"] == "tenure_days")
    assert tenure["status"] == "critical" and tenure["kind"] == "numeric"
    assert body["score"]["feature"] == "churn_risk"
    assert body["counts"] == written["counts"]
    assert body["reference_cutoffs"] == ["2025-01-01", "2025-02-01"]
    assert "bins" not in tenure  # the bins stay in drift.json and drift.md


def test_get_drift_follows_the_pointer_not_the_newest_directory(
    client: TestClient, settings: Settings
) -> None:
    write_run(settings, drift_result(shift=400.0), "2026-09-01", version=3)
    write_run(settings, drift_result(shift=0.0), "2026-07-01", version=2)  # a re-run of an old date
    body = client.get("/v1/monitor/drift", headers=_as("admin")).json()
    assert (body["as_of"], body["model_version"]) == ("2026-07-01", "2")


def test_get_drift_without_a_key_is_401(client: TestClient, settings: Settings) -> None:
    write_run(settings, drift_result(shift=0.0), "2026-09-01", version=1)
    response = client.get("/v1/monitor/drift")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "missing API key" in response.json()["detail"]


def test_get_drift_with_a_crm_key_is_403(client: TestClient, settings: Settings) -> None:
    write_run(settings, drift_result(shift=0.0), "2026-09-01", version=1)
    response = client.get("/v1/monitor/drift", headers=_as("crm"))
    assert response.status_code == 403
    assert "lacks the 'admin' scope" in response.json()["detail"]


def test_get_drift_before_any_run_is_404(client: TestClient, settings: Settings) -> None:
    response = client.get("/v1/monitor/drift", headers=_as("admin"))
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "retain monitor" in response.json()["detail"]


def test_get_drift_with_a_dangling_pointer_is_404(client: TestClient, settings: Settings) -> None:
    root = monitor_root(settings)
    root.mkdir(parents=True)
    (root / LATEST).write_text("2026-09-01\n")  # the run directory is gone
    response = client.get("/v1/monitor/drift", headers=_as("admin"))
    assert response.status_code == 404


def test_written_report_holds_the_bins_and_a_figure(settings: Settings) -> None:
    write_run(settings, drift_result(shift=400.0), "2026-09-01", version=3)
    run_dir = monitor_root(settings) / "2026-09-01"
    stored = json.loads((run_dir / "drift.json").read_text())
    assert sum(b["reference"] for b in stored["features"][0]["bins"]) == pytest.approx(1.0)
    assert (run_dir / "psi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**Overall status: critical**" in (run_dir / "drift.md").read_text()
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes leave no temporary behind

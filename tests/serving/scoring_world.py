"""A small trained world shared by the scoring and reload tests (built once per session).

Demo data for 600 customers, a store holding it, and real models registered in a temporary
MLflow SQLite store: churn-risk v1 (champion) and v2 (challenger), clv v1 and next-offer v1, all
small so that building the world takes seconds. Tests copy the store's database file and never
move the `champion` alias (the reload tests use aliases of their own).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient

from features.definitions import CHURN_FEATURES
from features.demo import generate_world
from features.engine import build_features
from features.io import Dataset, load_directory
from features.panel import build_panel, monthly_cutoffs, split_columns
from features.settings import ApiKey, Settings
from serving.app import create_app
from serving.scoring import ScoringService
from serving.store import Store
from training.next_offer import Goal, NextOfferModel, decision_outcomes, logged_decisions
from training.pipeline import train_churn, train_clv
from training.registry import log_training_run, serving_input_example

KEYS = {"crm": "crm-secret", "marketing": "mkt-secret", "admin": "admin-secret"}
N_CUSTOMERS = 600


def as_(scope: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[scope]}


@dataclass(frozen=True)
class World:
    root: Path
    tracking_uri: str
    template_db: Path
    offers_path: Path
    dataset: Dataset

    def settings(self, directory: Path, **overrides: object) -> Settings:
        """Settings for an app on a fresh copy of the world's store under `directory`."""
        database = directory / "retain.db"
        if not database.exists():
            shutil.copy(self.template_db, database)
        values: dict[str, object] = {
            "database_url": f"sqlite:///{database}",
            "mlflow_tracking_uri": self.tracking_uri,
            "mlflow_artifact_root": self.root / "mlruns" / "artifacts",
            "offers_path": self.offers_path,
            "data_dir": directory / "data",
            "api_keys": [ApiKey(name=s, key=k, scopes=[s]) for s, k in KEYS.items()],
            "feature_refresh_seconds": 0.0,
        }
        return Settings(**(values | overrides))  # type: ignore[arg-type]

    def offline_features(self, customer_id: str, as_of: pd.Timestamp) -> pd.DataFrame:
        """The offline definition's row for (customer, as_of), from the original files."""
        entities = pd.DataFrame({"customer_id": [customer_id], "cutoff": [as_of]})
        return build_features(self.dataset.events, self.dataset.customers, entities)


@contextmanager
def client_for(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def _fit_next_offer(dataset: Dataset) -> tuple[NextOfferModel, pd.DataFrame]:
    events, customers = dataset.events, dataset.customers
    decisions = logged_decisions(events)
    outcomes = decision_outcomes(events, decisions, goal=Goal(), data_end=events["timestamp"].max())
    complete = outcomes["complete"].to_numpy()
    decisions = decisions[complete].reset_index(drop=True)
    outcomes = outcomes[complete].reset_index(drop=True)
    entities = decisions[["customer_id", "decided_at"]].rename(columns={"decided_at": "cutoff"})
    x = build_features(events, customers, entities).drop(columns=["customer_id", "cutoff"])
    model = NextOfferModel(learner="t", num_threads=1).fit(x, decisions, outcomes)
    return model, x


def service(client: TestClient) -> ScoringService:
    """The scoring service behind a test client."""
    return client.app.state.scoring  # type: ignore[attr-defined,no-any-return]


@functools.cache
def trained_world() -> World:
    root = Path(tempfile.mkdtemp(prefix="retain-scoring-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    generate_world(N_CUSTOMERS, seed=3).write(root / "demo", "parquet")
    dataset = load_directory(root / "demo")
    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"

    panel = build_panel(dataset.events, dataset.customers, monthly_cutoffs(dataset.events, 24))
    features, _ = split_columns(panel)
    categorical = [c for c in features if pd.api.types.is_string_dtype(panel[c])]
    common = {
        "feature_columns": features,
        "categorical": categorical,
        "feature_set": CHURN_FEATURES.id,
        "tracking_uri": tracking_uri,
        "group_columns": (),
    }
    train_churn(panel, out_dir=root / "r1", params={"n_estimators": 40, "num_leaves": 7}, **common)
    train_churn(panel, out_dir=root / "r2", params={"n_estimators": 15, "num_leaves": 4}, **common)
    del common["group_columns"]
    train_clv(panel, out_dir=root / "r3", params={"n_estimators": 40, "num_leaves": 7}, **common)
    model, x = _fit_next_offer(dataset)
    log_training_run(
        kind="next-offer",
        estimator=model,
        input_example=serving_input_example(x.head(5), list(model.categories_)),
        params={"learner": "t"},
        tags={"feature_set": CHURN_FEATURES.id},
        metrics={},
        artifact_dir=None,
        model_name="next-offer",
        experiment_name="next-offer",
        tracking_uri=tracking_uri,
    )

    template = root / "template.db"
    with Store(f"sqlite:///{template}") as store:
        store.create_all()
        store.load_dataset(dataset)
    return World(root, tracking_uri, template, root / "demo" / "offers.yaml", dataset)

"""Model reloads: by alias, atomic, with no failed request while they happen."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from scoring_world import World, as_, client_for, trained_world

from features.definitions import CHURN_FEATURES
from features.settings import Settings
from serving.app import create_app
from serving.models import MODEL_NAMES, ModelHolder
from training.registry import LoadedModel, load_champion


@pytest.fixture(scope="module")
def world() -> World:
    return trained_world()


def point_alias(world: World, alias: str, churn_version: str) -> None:
    registry = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    for name in MODEL_NAMES:
        registry.set_registered_model_alias(name, alias, "1")
    registry.set_registered_model_alias("churn-risk", alias, churn_version)


def wait_until(check: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Hammer:
    """Threads calling churn and recommend until stopped, recording every answer."""

    client: TestClient
    ids: list[str]
    results: list[tuple[float, int, str | None]]
    stop: threading.Event

    def run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        for n in itertools.count():
            if self.stop.is_set():
                return
            customer_id = self.ids[int(rng.integers(len(self.ids)))]
            started = time.monotonic()
            if n % 3 == 2:
                response = self.client.post(
                    "/v1/offers/recommend",
                    json={"customer_id": customer_id},
                    headers=as_("marketing"),
                )
            else:
                response = self.client.get(f"/v1/customers/{customer_id}/churn", headers=as_("crm"))
            version = response.json()["models"]["churn-risk"] if response.is_success else None
            self.results.append((started, response.status_code, version))


@pytest.fixture
def hammering(world: World, tmp_path: Path) -> Iterator[tuple[TestClient, Hammer]]:
    point_alias(world, "reload-test", "1")
    settings = world.settings(tmp_path, model_alias="reload-test")
    with client_for(settings) as client:
        ids = world.dataset.customers["customer_id"].astype(str).head(40).tolist()
        hammer = Hammer(client, ids, [], threading.Event())
        threads = [threading.Thread(target=hammer.run, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        try:
            yield client, hammer
        finally:
            hammer.stop.set()
            for thread in threads:
                thread.join(timeout=60)


def test_reload_swaps_version_with_no_failed_request(
    hammering: tuple[TestClient, Hammer], world: World
) -> None:
    client, hammer = hammering
    # Enough answers on both sides of the swap, however slow the machine (not a fixed sleep).
    assert wait_until(lambda: len(hammer.results) >= 12)
    point_alias(world, "reload-test", "2")

    response = client.post("/v1/admin/reload", headers=as_("admin"))
    swapped_at = time.monotonic()
    assert wait_until(lambda: sum(r[0] > swapped_at for r in list(hammer.results)) >= 12)
    hammer.stop.set()

    assert response.status_code == 200, response.text
    assert response.json()["models"]["churn-risk"] == "2"
    assert client.get("/readyz").json()["models"]["churn-risk"] == "2"
    statuses = {status for _, status, _ in hammer.results}
    assert statuses == {200}, [r for r in hammer.results if r[1] != 200][:5]
    after = {v for started, _, v in hammer.results if started > swapped_at}
    assert after == {"2"}  # every request that started after the swap used the new version
    assert {v for _, _, v in hammer.results} == {"1", "2"}

    customer_id = hammer.ids[0]
    score = client.get(f"/v1/customers/{customer_id}/churn", headers=as_("crm")).json()
    churn = load_champion("churn-risk", alias="reload-test", tracking_uri=world.tracking_uri)
    features = world.offline_features(customer_id, pd.Timestamp(score["as_of"]))
    assert churn.version == 2
    assert score["risk"] == pytest.approx(churn.model.predict_proba(features)[0, 1], abs=1e-12)


def test_poll_reloads_when_the_alias_moves(world: World, tmp_path: Path) -> None:
    point_alias(world, "poll-test", "1")
    settings = world.settings(tmp_path, model_alias="poll-test", model_poll_seconds=0.2)
    with client_for(settings) as client:
        assert client.get("/readyz").json()["models"]["churn-risk"] == "1"
        point_alias(world, "poll-test", "2")
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["models"]["churn-risk"] != "2":
            assert time.monotonic() < deadline, "the poller never reloaded"
            time.sleep(0.1)


def served(settings: Settings) -> TestClient:
    """A client of the app as a worker of `retain serve` runs it."""
    app = create_app(settings)
    app.state.served = True
    return TestClient(app)


def test_reload_reaches_every_worker(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("serving.scoring.settle_memory", lambda: None)  # not in a test process
    point_alias(world, "signal-test", "1")
    settings = world.settings(tmp_path, model_alias="signal-test")
    with served(settings) as first, served(settings) as second:  # two workers, one data dir
        point_alias(world, "signal-test", "2")
        assert first.post("/v1/admin/reload", headers=as_("admin")).status_code == 200
        deadline = time.monotonic() + 30
        while second.get("/readyz").json()["models"]["churn-risk"] != "2":
            assert time.monotonic() < deadline, "the other worker never reloaded"
            time.sleep(0.1)


# --- the holder, with stand-in models -----------------------------------------------------


@dataclass
class FakeModel:
    generation: int
    feature_names_in_: tuple[str, ...] = ("x",)


class FakeRegistry:
    """Loads a `FakeModel` tagged with the load number; can fail, and can be slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.loads = 0
        self.delay = delay
        self.failing: set[str] = set()

    def load(self, name: str, alias: str) -> LoadedModel:
        if name == MODEL_NAMES[0]:
            self.loads += 1
        time.sleep(self.delay)
        if name in self.failing:
            raise OSError(f"artifact of {name} unreadable")
        return LoadedModel(
            model=FakeModel(self.loads),
            name=name,
            version=self.loads,
            alias=alias,
            run_id=f"run-{self.loads}",
            feature_set=CHURN_FEATURES.id,
        )


def test_reload_keeps_the_previous_model_when_a_load_fails() -> None:
    registry = FakeRegistry()
    holder = ModelHolder(registry.load)
    holder.reload()
    registry.failing.add("clv")

    current = holder.reload()

    assert current.versions() == {"churn-risk": "2", "clv": "1", "next-offer": "2"}
    assert "artifact of clv unreadable" in current.errors["clv"]


def test_reload_swaps_the_whole_set_at_once() -> None:
    registry = FakeRegistry(delay=0.01)
    holder = ModelHolder(registry.load)
    holder.reload()
    stop = threading.Event()
    mixed: list[set[int]] = []

    def read() -> None:
        while not stop.is_set():
            current = holder.current
            generations = {current.loaded[name].model.generation for name in MODEL_NAMES}
            if len(generations) != 1:
                mixed.append(generations)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for _ in range(10):
        holder.reload()
    stop.set()
    for reader in readers:
        reader.join()

    assert not mixed
    assert holder.current.generation == 11
    assert holder.current.versions()["churn-risk"] == "11"

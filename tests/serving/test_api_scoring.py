"""Scoring and offers over HTTP, against real (small) models and the offline definitions.

The world (demo data, store, models in MLflow) is built once per session; see scoring_world.py.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pandas.testing import assert_frame_equal
from scoring_world import World, as_, client_for, service
from typer.testing import CliRunner

from features.contract import NO_OFFER
from features.definitions import CHURN_FEATURES
from features.engine import build_features
from features.offers import Offer
from features.settings import get_settings
from serving.cli import app as cli
from serving.decision_log import DecisionLog
from serving.online import recent_contacts, signature_and_contacts, signatures, utc_now
from serving.scoring import _isotonic, _under_caps, epsilon_greedy, profiles
from serving.store import Prepared, Store, new_decision
from training.kpis import kpis
from training.policy import eligibility, exploration_probabilities, explore
from training.reasons import reason_codes
from training.registry import load_champion

SCORE_DATE = "2026-09-01"


@pytest.fixture
def client(world: World, world_store: dict[str, str], tmp_path: Path) -> Iterator[TestClient]:
    """A service on a fresh copy of the world's store, on SQLite and on PostgreSQL."""
    with client_for(world.settings(tmp_path, **world_store)) as test_client:
        yield test_client


def customers_where(world: World, **conditions: Any) -> list[str]:
    frame = world.dataset.customers
    mask = np.ones(len(frame), dtype=bool)
    for column, value in conditions.items():
        mask &= (frame[column] == value).to_numpy()
    return frame.loc[mask, "customer_id"].astype(str).tolist()


def offline_scores(world: World, customer_id: str, as_of: pd.Timestamp) -> dict[str, Any]:
    """Risk, CLV and reasons by the training-side code path: offline features, `predict_proba`,
    `CLVModel.predict`, `contributions` + `reason_codes`."""
    features = world.offline_features(customer_id, as_of)
    churn = load_champion("churn-risk", tracking_uri=world.tracking_uri).model
    clv = load_champion("clv", tracking_uri=world.tracking_uri).model
    codes = reason_codes(churn.contributions(features), features, top_k=3)
    return {
        "risk": float(churn.predict_proba(features)[:, 1][0]),
        "clv": float(clv.predict(features)[0]),
        "reasons": [r for r in codes.iloc[0, :3].tolist() if isinstance(r, str)],
    }


# --- churn -----------------------------------------------------------------------------------


def test_score_churn_equals_offline_prediction(client: TestClient, world: World) -> None:
    for customer_id in world.dataset.customers["customer_id"].head(5):
        response = client.get(f"/v1/customers/{customer_id}/churn", headers=as_("crm"))
        assert response.status_code == 200, response.text
        body = response.json()
        expected = offline_scores(world, customer_id, pd.Timestamp(body["as_of"]))
        assert body["risk"] == pytest.approx(expected["risk"], abs=1e-12)
        assert body["clv"] == pytest.approx(expected["clv"], rel=1e-12)
        assert body["reasons"] == expected["reasons"]
        assert body["band"] == (
            "high" if body["risk"] >= 0.6 else "medium" if body["risk"] >= 0.3 else "low"
        )
        assert body["feature_set"] == CHURN_FEATURES.id
        assert body["models"] == {"churn-risk": "1", "clv": "1"}


def test_cached_features_equal_offline_definition(client: TestClient, world: World) -> None:
    cache = service(client).cache
    ids = world.dataset.customers["customer_id"].astype(str).tolist()
    cache.compute(ids[:300])  # the bulk path of the background warm-up
    cache.compute(ids[300:301])  # the one-customer path of a cache miss
    blocks = cache.blocks()
    assert sorted(len(b) for b in blocks) == [1, 300]
    for block in blocks:
        entities = pd.DataFrame(
            {"customer_id": block.features["customer_id"], "cutoff": block.as_of}
        )
        offline = build_features(world.dataset.events, world.dataset.customers, entities)
        assert_frame_equal(block.features, offline)


def test_ingest_events_changes_next_score(client: TestClient, world: World) -> None:
    customer_id = customers_where(world, segment="retail")[0]
    url = f"/v1/customers/{customer_id}/churn"
    before = client.get(url, headers=as_("crm")).json()
    assert client.get(url, headers=as_("crm")).json()["as_of"] == before["as_of"]  # cached
    now = utc_now()
    purchases = [
        {
            "event_id": f"test-{customer_id}-{i}",
            "customer_id": customer_id,
            "timestamp": (now - pd.Timedelta(days=i + 1)).isoformat(),
            "event_type": "purchase",
            "amount": 80.0,
        }
        for i in range(6)
    ]
    ingested = client.post("/v1/events", json={"events": purchases}, headers=as_("crm"))
    assert ingested.json() == {"inserted": 6, "duplicates": 0}

    after = client.get(url, headers=as_("crm")).json()

    assert after["as_of"] > before["as_of"]
    assert after["risk"] < before["risk"]
    assert not any("no purchase" in reason for reason in after["reasons"])
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    features = service(client).cache.entry(customer_id)
    assert features is not None
    row = features.block.features.iloc[[features.row]].reset_index(drop=True)
    entities = pd.DataFrame({"customer_id": [customer_id], "cutoff": [features.as_of]})
    offline = build_features(
        store.events_of(customer_id), store.customers_frame([customer_id]), entities
    )
    assert_frame_equal(row, offline)
    assert row["n_purchase_30d"].iloc[0] == 6


def test_score_batch_lists_unknown_ids(client: TestClient, world: World) -> None:
    ids = world.dataset.customers["customer_id"].head(4).astype(str).tolist()
    response = client.post(
        "/v1/churn/score", json={"customer_ids": [*ids, "nobody", ids[0]]}, headers=as_("crm")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["customer_id"] for s in body["scores"]] == ids
    assert body["unknown"] == ["nobody"]
    single = client.get(f"/v1/customers/{ids[1]}/churn", headers=as_("crm")).json()
    assert body["scores"][1] == single


def test_score_batch_refuses_over_limit(world: World, tmp_path: Path) -> None:
    with client_for(world.settings(tmp_path, max_batch_customers=3)) as small:
        response = small.post(
            "/v1/churn/score", json={"customer_ids": ["a", "b", "c", "d"]}, headers=as_("crm")
        )
    assert response.status_code == 413
    assert response.json()["detail"] == "at most 3 customers per request"


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/customers/C404404/churn", None),
        ("POST", "/v1/offers/recommend", {"customer_id": "C404404"}),
    ],
)
def test_unknown_customer_is_404_problem(
    client: TestClient, method: str, url: str, body: dict[str, str] | None
) -> None:
    scope = "crm" if method == "GET" else "marketing"
    response = client.request(method, url, json=body, headers=as_(scope))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "no customer 'C404404'"


def test_readyz_reports_loaded_versions(client: TestClient) -> None:
    assert client.get("/readyz").json() == {
        "ready": True,
        "store": True,
        "models": {"churn-risk": "1", "clv": "1", "next-offer": "1"},
    }


# --- offers ----------------------------------------------------------------------------------


def catalog(client: TestClient) -> dict[str, Offer]:
    return {o.offer_id: o for o in service(client).offers}


def recommend(client: TestClient, customer_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/offers/recommend",
        json={"customer_id": customer_id, "k": 10} | body,
        headers=as_("marketing"),
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_recommend_without_consent_offers_service_actions_only(
    client: TestClient, world: World
) -> None:
    offers = catalog(client)
    for customer_id in customers_where(world, marketing_consent=False)[:8]:
        body = recommend(client, customer_id)
        shown = {a["offer_id"] for a in body["actions"]}
        assert all(a == NO_OFFER or not offers[a].marketing for a in shown), shown
        assert not any(a["marketing"] for a in body["actions"])
    consenting = [recommend(client, c) for c in customers_where(world, marketing_consent=True)[:8]]
    assert any(a["marketing"] for body in consenting for a in body["actions"])


def test_recommend_logs_decision_with_candidates_and_propensity(
    client: TestClient, world: World
) -> None:
    customer_id = customers_where(world, marketing_consent=True, language="fr")[0]
    body = recommend(client, customer_id, context={"channel": "email"})

    store: Store = client.app.state.store  # type: ignore[attr-defined]
    decision = store.decision(body["decision_id"])
    assert decision is not None
    assert decision.customer_id == customer_id
    assert decision.offer_id == body["offer_id"] == body["actions"][0]["offer_id"]
    assert decision.propensity == pytest.approx(body["propensity"])
    assert 0 < body["propensity"] <= 1
    assert decision.context["channel"] == "email"
    assert decision.model_version == "next-offer:1"
    logged = {c["offer_id"]: c for c in decision.candidates}
    assert {a["offer_id"] for a in body["actions"]} <= set(logged)
    assert sum(c["probability"] for c in decision.candidates) == pytest.approx(1.0)
    assert logged[body["offer_id"]]["probability"] == pytest.approx(body["propensity"])

    outcome = client.post(
        f"/v1/decisions/{body['decision_id']}/outcome",
        json={"kind": "redeemed", "value": 12.5},
        headers=as_("marketing"),
    )
    assert outcome.status_code == 200
    assert outcome.json()["recorded"] is True


@pytest.mark.parametrize(
    ("language", "override", "expected"),
    [("fr", None, "fr"), ("de-CH", None, "de"), ("fr", "es", "es")],
)
def test_recommend_messages_in_customer_language(
    client: TestClient, world: World, language: str, override: str | None, expected: str
) -> None:
    offers = catalog(client)
    customer_id = customers_where(world, marketing_consent=True, language=language)[0]
    context = {"language": override} if override else {}
    body = recommend(client, customer_id, context=context)
    assert body["language"] == (override or language)
    for action in body["actions"]:
        if action["offer_id"] != NO_OFFER:
            assert action["message"] == offers[action["offer_id"]].messages[expected]


def test_recommend_never_offers_an_offer_without_a_message_in_the_language(
    client: TestClient, world: World
) -> None:
    for customer_id in customers_where(world, language="nl", marketing_consent=True)[:5]:
        body = recommend(client, customer_id)
        assert "gift" not in {a["offer_id"] for a in body["actions"]}


def test_recommend_respects_contact_cap(client: TestClient, world: World) -> None:
    capped = {"discount_10", "free_shipping"}
    store: Store = client.app.state.store  # type: ignore[attr-defined]

    def candidates(customer_id: str) -> set[str]:
        decision = store.decision(recommend(client, customer_id)["decision_id"])
        assert decision is not None
        return {c["offer_id"] for c in decision.candidates}

    customer_id = next(
        c
        for c in customers_where(world, marketing_consent=True, country="DE")
        if capped <= candidates(c)
    )
    for offer in capped:
        store.record_decision(customer_id=customer_id, offer_id=offer, model_version="test")
    assert capped.isdisjoint(candidates(customer_id))


def test_recent_contacts_count_as_store_recent_offer_count(
    client: TestClient, world: World
) -> None:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    offers = list(catalog(client))
    since = pd.Timestamp("2026-06-01")
    for customer_id in world.dataset.customers["customer_id"].head(40).astype(str):
        store.record_decision(customer_id=customer_id, offer_id="gift", model_version="test")
        expected = {o: store.recent_offer_count(customer_id, o, since) for o in offers}
        assert recent_contacts(store, customer_id, offers, since) == expected
        signature, counts = signature_and_contacts(store, customer_id, offers, since)
        assert counts == expected
        assert signature == signatures(store, [customer_id])[customer_id]
    assert any(
        recent_contacts(store, c, offers, since)["discount_10"] > 0
        for c in world.dataset.customers["customer_id"].head(40).astype(str)
    )


def test_recommend_greedy_without_exploration(world: World, tmp_path: Path) -> None:
    with client_for(world.settings(tmp_path, exploration_epsilon=0.0)) as greedy:
        for customer_id in customers_where(world, marketing_consent=True)[:5]:
            body = recommend(greedy, customer_id)
            values = [a["expected_value"] for a in body["actions"]]
            assert body["propensity"] == 1.0 and not body["explored"]
            assert values == sorted(values, reverse=True)


def test_recommend_without_next_offer_model_is_503(world: World, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    registry = MlflowClient(tracking_uri=world.tracking_uri, registry_uri=world.tracking_uri)
    for name in ("churn-risk", "clv"):  # an alias that next-offer lacks
        registry.set_registered_model_alias(name, "no-offers", "1")
    with client_for(world.settings(tmp_path, model_alias="no-offers")) as partial:
        ready = partial.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["models"] == {"churn-risk": "1", "clv": "1", "next-offer": None}
        customer_id = str(world.dataset.customers["customer_id"].iloc[0])
        response = partial.post(
            "/v1/offers/recommend", json={"customer_id": customer_id}, headers=as_("marketing")
        )
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert "no next-offer model is loaded" in response.json()["detail"]
        churn = partial.get(f"/v1/customers/{customer_id}/churn", headers=as_("crm"))
        assert churn.status_code == 200


# --- batch scores, at-risk, KPIs --------------------------------------------------------------


@pytest.fixture
def scored(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`retain score --as-of SCORE_DATE` run on the client's store; returns the data dir."""
    settings = world.settings(tmp_path)
    env = {
        "RETAIN_DATABASE_URL": settings.database_url,
        "RETAIN_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "RETAIN_OFFERS_PATH": str(settings.offers_path),
        "RETAIN_DATA_DIR": str(settings.data_dir),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["score", "--as-of", SCORE_DATE, "--threads", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return settings.data_dir


def test_score_command_writes_run_and_latest_pointer(scored: Path, world: World) -> None:
    run = scored / "scores" / SCORE_DATE
    assert (scored / "scores" / "latest").read_text().strip() == SCORE_DATE
    parquet = pd.read_parquet(run / "scores.parquet")
    csv = pd.read_csv(run / "scores.csv")
    assert len(parquet) == len(csv) > 50
    assert {"customer_id", "risk", "band", "reason_1", "clv", "best_action"} <= set(csv.columns)
    assert parquet["customer_id"].is_unique
    assert (parquet["best_action_value"] >= 0).all()  # `none` (0) is always allowed
    summary = (run / "summary.json").read_text()
    assert '"churn-risk": "1"' in summary


def test_at_risk_pages_filters_and_csv(scored: Path, world: World, tmp_path: Path) -> None:
    with client_for(world.settings(tmp_path)) as client:
        first = client.get("/v1/at-risk?min_risk=0&limit=5", headers=as_("crm")).json()
        second = client.get("/v1/at-risk?min_risk=0&limit=5&offset=5", headers=as_("crm")).json()
        everyone = client.get("/v1/at-risk?min_risk=0&limit=10000", headers=as_("crm")).json()
        high = client.get("/v1/at-risk", headers=as_("crm")).json()
        business = client.get(
            "/v1/at-risk?min_risk=0&segment=business&limit=10000", headers=as_("crm")
        ).json()
        by_accept = client.get(
            "/v1/at-risk?min_risk=0&limit=5", headers=as_("crm") | {"Accept": "text/csv"}
        )
        by_param = client.get("/v1/at-risk?min_risk=0&limit=5&format=csv", headers=as_("crm"))

    risks = [item["risk"] for item in everyone["items"]]
    assert risks == sorted(risks, reverse=True)
    assert first["total"] == everyone["total"] == len(everyone["items"])
    assert first["items"] + second["items"] == everyone["items"][:10]
    assert first["as_of"] == SCORE_DATE
    assert high["min_risk"] == 0.6 and all(i["risk"] >= 0.6 for i in high["items"])
    assert business["total"] > 0
    assert {i["segment"] for i in business["items"]} == {"business"}
    for csv in (by_accept, by_param):
        assert csv.headers["content-type"].startswith("text/csv")
        table = pd.read_csv(io.StringIO(csv.text))
        assert table["customer_id"].tolist() == [i["customer_id"] for i in first["items"]]
        assert csv.headers["x-total-count"] == str(first["total"])


def test_at_risk_without_a_run_is_404(client: TestClient) -> None:
    response = client.get("/v1/at-risk", headers=as_("crm"))
    assert response.status_code == 404
    assert "retain score --as-of" in response.json()["detail"]


def test_kpis_match_training_kpis_and_are_cached(client: TestClient, world: World) -> None:
    url = "/v1/kpis?dimension=segment&metric=active_customers&periods=3"
    first = client.get(url, headers=as_("crm"))
    assert first.status_code == 200, first.text
    body = first.json()
    expected = kpis(world.dataset.customers, world.dataset.events)
    expected = expected[
        (expected["dimension"] == "segment") & (expected["metric"] == "active_customers")
    ]
    expected = expected[expected["period"].isin(sorted(expected["period"].unique())[-3:])]
    got = {(r["period"], r["group"]): r["value"] for r in body["rows"]}
    want = {(str(r.period.date()), str(r.group)): r.value for r in expected.itertuples(index=False)}
    assert got == pytest.approx(want)
    again = client.get("/v1/kpis", headers=as_("crm")).json()
    assert again["computed_at"] == body["computed_at"]


# --- exactness of the fast paths ---------------------------------------------------------------


def test_isotonic_shortcut_equals_calibrator_predict(world: World) -> None:
    churn = load_champion("churn-risk", tracking_uri=world.tracking_uri).model
    raw = np.concatenate([np.linspace(-0.1, 1.1, 500), np.random.default_rng(0).random(500)])
    assert np.array_equal(_isotonic(churn.calibrator_, raw), churn.calibrator_.predict(raw))


@pytest.mark.parametrize("seed", range(5))
def test_live_caps_equal_policy_eligibility(client: TestClient, world: World, seed: int) -> None:
    offers = service(client).offers
    rng = np.random.default_rng(seed)
    customers = world.dataset.customers.sample(40, random_state=seed)
    rules_in = profiles(customers, pd.Timestamp("2026-09-01"))
    counts = pd.DataFrame(
        rng.integers(0, 3, size=(len(customers), len(offers))),
        index=rules_in.index,
        columns=[o.offer_id for o in offers],
    )
    expected = eligibility(rules_in, offers, counts)
    static = eligibility(rules_in, offers)
    actions = list(static.columns)
    for row, customer_id in enumerate(rules_in.index):
        live = static.iloc[row].to_numpy(dtype=bool) & _under_caps(
            {o.offer_id: o for o in offers}, actions, counts.loc[customer_id].to_dict()
        )
        assert live.tolist() == expected.iloc[row].tolist()


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_epsilon_greedy_equals_policy_explore(epsilon: float) -> None:
    rng = np.random.default_rng(int(epsilon * 10))
    actions = [NO_OFFER, "a", "b", "c", "d"]
    for seed in range(200):
        values = rng.normal(size=len(actions)).round(1)  # rounded: ties happen
        allowed = rng.random(len(actions)) < 0.6
        allowed[0] = True  # `none` always is
        frame = pd.DataFrame([values], columns=actions, index=["c1"])
        eligible = pd.DataFrame([allowed], columns=actions, index=["c1"])
        expected = exploration_probabilities(frame, eligible, epsilon=epsilon).iloc[0]
        chosen, propensity = explore(
            frame, eligible, epsilon=epsilon, rng=np.random.default_rng(seed)
        )
        draw = float(np.random.default_rng(seed).random())
        probabilities, column, _ = epsilon_greedy(values, allowed, epsilon=epsilon, draw=draw)
        assert probabilities.tolist() == expected.tolist()
        assert actions[column] == chosen.iloc[0]
        assert probabilities[column] == propensity.iloc[0]


def test_decision_log_commits_waiting_decisions_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    with Store(url) as store, Store(url) as other_worker:
        store.create_all()
        commits: list[int] = []
        write_many = Prepared.write_many

        def slow_commit(prepared: Prepared, rows: Any, **options: Any) -> None:
            write_many(prepared, rows, **options)
            commits.append(1)
            time.sleep(0.01)  # an fsync's worth of time in the lock, so that others queue

        monkeypatch.setattr(Prepared, "write_many", slow_commit)
        # Two logs on one SQLite file, as two worker processes: they contend for its lock.
        logs = [DecisionLog(store), DecisionLog(other_worker)]
        decisions = [
            new_decision(
                customer_id=f"C{i}",
                offer_id="gift" if i % 2 else NO_OFFER,
                model_version="next-offer:1",
                propensity=0.5,
                expected_value=float(i),
                context={"channel": "app", "score": np.float64(0.25)},
                candidates=[{"offer_id": "gift", "expected_value": np.nan}],
                created_at=utc_now(),
            )
            for i in range(128)
        ]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda d: logs[int(d.customer_id[1:]) % 2].record(d), decisions))
        for log in logs:
            log.close()

        assert [store.decision(d.decision_id) for d in decisions] == decisions
        assert 0 < len(commits) < len(decisions) / 2

"""The service's ingestion and feedback routes: auth, idempotency, problem+json errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from features.settings import ApiKey, Settings
from serving.app import create_app

KEYS = {"crm": "crm-secret", "marketing": "mkt-secret", "admin": "admin-secret"}
CUSTOMER = {"customer_id": "C1", "signup_date": "2024-01-01", "country": "DE", "language": "de"}
PURCHASE = {
    "event_id": "e1",
    "customer_id": "C1",
    "timestamp": "2025-01-01T10:00:00",
    "event_type": "purchase",
    "amount": 20.0,
}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    """A service on an empty store, on SQLite and on PostgreSQL (conftest.py)."""
    settings = Settings(
        database_url=database_url,
        api_keys=[ApiKey(name=scope, key=key, scopes=[scope]) for scope, key in KEYS.items()],
        max_request_bytes=20_000,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def as_(scope: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[scope]}


def test_healthz_needs_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "missing API key"),
        ({"X-API-Key": "wrong"}, 401, "invalid API key"),
        ({"X-API-Key": KEYS["marketing"]}, 403, "lacks the 'crm' scope"),
    ],
)
def test_ingest_events_refuses_bad_keys(
    client: TestClient, headers: dict[str, str], status: int, detail: str
) -> None:
    response = client.post("/v1/events", json={"events": [PURCHASE]}, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    assert "secret" not in response.text


def test_ingest_events_is_idempotent(client: TestClient) -> None:
    assert client.post(
        "/v1/customers", json={"customers": [CUSTOMER]}, headers=as_("crm")
    ).json() == {"written": 1}
    first = client.post("/v1/events", json={"events": [PURCHASE]}, headers=as_("crm"))
    assert first.json() == {"inserted": 1, "duplicates": 0}
    again = client.post("/v1/events", json={"events": [PURCHASE]}, headers=as_("crm"))
    assert again.json() == {"inserted": 0, "duplicates": 1}
    stored = client.app.state.store.events_of("C1")  # type: ignore[attr-defined]
    assert stored["event_id"].tolist() == ["e1"]


def test_ingest_events_rejects_bad_batch_whole(client: TestClient) -> None:
    client.post("/v1/customers", json={"customers": [CUSTOMER]}, headers=as_("crm"))
    bad = PURCHASE | {"event_id": "e2", "amount": -1.0}
    unknown = PURCHASE | {"event_id": "e3", "customer_id": "C404"}
    response = client.post(
        "/v1/events", json={"events": [PURCHASE, bad, unknown]}, headers=as_("crm")
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        "request: row 2, column events.amount: negative amount -1.0 (must be >= 0)",
        "request: row 3, column events.customer_id: unknown customer C404",
    ]
    assert client.app.state.store.events_of("C1").empty  # type: ignore[attr-defined]


def test_busy_store_is_503_problem_with_retry_after(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.post("/v1/customers", json={"customers": [CUSTOMER]}, headers=as_("crm"))
    locked = sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    def wait_out_the_lock(_frame: object) -> None:
        raise locked

    store = client.app.state.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "ingest_events", wait_out_the_lock)
    response = client.post("/v1/events", json={"events": [PURCHASE]}, headers=as_("crm"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert "retry" in response.json()["detail"]
    assert "database is locked" not in response.text


def test_ingest_events_rejects_malformed_json_with_problem(client: TestClient) -> None:
    response = client.post(
        "/v1/events", json={"events": [{"customer_id": "C1"}]}, headers=as_("crm")
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("events.0.timestamp: Field required")


def test_request_over_size_limit_is_refused(client: TestClient) -> None:
    events = [PURCHASE | {"event_id": f"e{i}"} for i in range(400)]
    response = client.post("/v1/events", json={"events": events}, headers=as_("crm"))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_record_outcome_is_idempotent_and_knows_decisions(client: TestClient) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    decision = store.record_decision(
        customer_id="C1", offer_id="gift", model_version="1", propensity=0.5
    )
    url = f"/v1/decisions/{decision.decision_id}/outcome"
    first = client.post(url, json={"kind": "redeemed"}, headers=as_("marketing"))
    assert first.json()["recorded"] is True
    again = client.post(url, json={"kind": "redeemed"}, headers=as_("marketing"))
    assert again.json()["recorded"] is False
    missing = client.post(
        "/v1/decisions/nope/outcome", json={"kind": "redeemed"}, headers=as_("marketing")
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no decision 'nope'"

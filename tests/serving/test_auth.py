"""API keys: every keyed route refuses a missing, wrong or wrongly scoped key; keys never leak.

Routes are read from `app.openapi()` and each one's scope from its dependencies, so a route
added later is checked without touching this file; one that forgets its key check fails here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from features.settings import ApiKey, Settings
from serving.app import create_app
from serving.errors import PROBLEM_JSON
from serving.security import SCOPES, RequireScope, require

# Routes anyone may call (probes and metrics); every other route must need a key.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
# Long, distinctive secrets, so that finding one in a log cannot be a coincidence.
KEYS = {scope: f"sk-{scope}-4f9b2c7e1d8a6053b" for scope in SCOPES}
ALL_BUT = {scope: f"sk-all-but-{scope}-93e1a7c05b2d4f86" for scope in SCOPES}
WRONG_KEY = KEYS["admin"] + "x"  # a near miss: the comparison must be exact


def _settings(database_url: str) -> Settings:
    keys = [ApiKey(name=f"{scope}-key", key=key, scopes=[scope]) for scope, key in KEYS.items()]
    keys += [
        ApiKey(name=f"all-but-{scope}", key=key, scopes=[s for s in SCOPES if s != scope])
        for scope, key in ALL_BUT.items()
    ]
    return Settings(database_url=database_url, api_keys=keys)


def _required_scopes(dependant: Dependant) -> set[str]:
    found = set()
    for sub in dependant.dependencies:
        if isinstance(sub.call, RequireScope):
            found.add(sub.call.scope)
        found |= _required_scopes(sub)
    return found


def route_scopes(app: FastAPI) -> dict[tuple[str, str], set[str]]:
    """(method, path) of every route in the schema -> the scopes its dependencies require."""
    scopes: dict[tuple[str, str], set[str]] = {}
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            for method in context.methods or ():
                scopes[(method, str(context.path))] = _required_scopes(context.dependant)
    return scopes


APP = create_app(_settings("sqlite://"))  # connects to nothing until its lifespan starts
OPERATIONS = sorted(
    (method.upper(), path) for path, item in APP.openapi()["paths"].items() for method in item
)
SCOPE_OF = route_scopes(APP)
KEYED = [op for op in OPERATIONS if op not in PUBLIC]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(_settings(f"sqlite:///{tmp_path / 'retain.db'}"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def call(client: TestClient, operation: tuple[str, str], key: str | None) -> Any:
    """The operation with placeholder path parameters and an empty JSON object as its body."""
    method, path = operation
    url = re.sub(r"\{[^}]+\}", "probe", path)
    headers = {} if key is None else {"X-API-Key": key}
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, url, headers=headers, json=body)


def _as(scope: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[scope]}


def assert_problem(response: Any, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert detail in response.json()["detail"]


def test_every_schema_operation_is_a_route_and_keyed_unless_public() -> None:
    assert set(OPERATIONS) == set(SCOPE_OF), "schema and routes disagree"
    assert KEYED, "no keyed route found: the enumeration is broken"
    for operation in OPERATIONS:
        expected = 0 if operation in PUBLIC else 1
        assert len(SCOPE_OF[operation]) == expected, (operation, SCOPE_OF[operation])


def test_schema_declares_the_key_on_keyed_routes_only() -> None:
    paths = APP.openapi()["paths"]
    for method, path in OPERATIONS:
        declared = paths[path][method.lower()].get("security")
        assert bool(declared) == ((method, path) not in PUBLIC), (method, path)


@pytest.mark.parametrize("operation", KEYED, ids=" ".join)
def test_keyed_route_refuses_missing_key(client: TestClient, operation: tuple[str, str]) -> None:
    response = call(client, operation, key=None)
    assert_problem(response, 401, "missing API key")
    assert response.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize("operation", KEYED, ids=" ".join)
def test_keyed_route_refuses_wrong_key(client: TestClient, operation: tuple[str, str]) -> None:
    response = call(client, operation, key=WRONG_KEY)
    assert_problem(response, 401, "invalid API key")
    assert response.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize("operation", KEYED, ids=" ".join)
def test_keyed_route_refuses_key_without_its_scope(
    client: TestClient, operation: tuple[str, str]
) -> None:
    (scope,) = SCOPE_OF[operation]
    assert_problem(call(client, operation, key=ALL_BUT[scope]), 403, f"lacks the '{scope}' scope")


@pytest.mark.parametrize("operation", KEYED, ids=" ".join)
def test_keyed_route_admits_key_with_its_scope(
    client: TestClient, operation: tuple[str, str]
) -> None:
    (scope,) = SCOPE_OF[operation]
    # The empty body is refused next, by validation: proof that the key check let it through.
    assert call(client, operation, key=KEYS[scope]).status_code not in (401, 403)


@pytest.mark.parametrize("operation", sorted(PUBLIC), ids=" ".join)
def test_public_route_needs_no_key(client: TestClient, operation: tuple[str, str]) -> None:
    # /readyz answers 503 until models are loaded: what matters is that no key is asked for.
    assert call(client, operation, key=None).status_code in (200, 503)


def test_require_refuses_unknown_scope() -> None:
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        require("root")


class _BrokenStore:
    """Fails every call, as a store whose database went away would."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"store unavailable ({name})")


def test_api_keys_never_appear_in_logs_or_responses(
    client: TestClient, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [*KEYS.values(), *ALL_BUT.values(), WRONG_KEY]
    responses = []
    for operation in OPERATIONS:
        for key in (None, WRONG_KEY, *KEYS.values(), *ALL_BUT.values()):
            responses.append(call(client, operation, key))
    customer = {"customer_id": "C1", "signup_date": "2024-01-01"}
    stored = client.post("/v1/customers", json={"customers": [customer]}, headers=_as("crm"))
    assert stored.status_code == 200
    # A failing request: the store breaks mid-request, the service logs the trace and sends 500.
    client.app.state.store = _BrokenStore()  # type: ignore[attr-defined]
    failed = client.post("/v1/customers", json={"customers": [customer]}, headers=_as("crm"))
    assert failed.status_code == 500
    responses += [stored, failed]

    # The capture is live (the 500 was logged, with its trace), so its silence about keys counts.
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    logged = caplog.text + "".join(capfd.readouterr())
    sent = "".join(f"{r.headers}{r.text}" for r in responses)
    for secret in secrets:
        assert secret not in logged
        assert secret not in sent
    assert not any(secret in repr(client.app.state.settings) for secret in secrets)  # type: ignore[attr-defined]

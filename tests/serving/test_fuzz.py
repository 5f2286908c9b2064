"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis, in-process).

Each operation is sent schema-valid (positive) and schema-breaking (negative) requests, once with
a key holding every scope and once without a key. Whatever arrives, the service must answer
without a 5xx, as its schema documents (status, content type, headers, body), and every error
must be `application/problem+json` with `status`, `title` and `detail`. Operations are read from
`app.openapi()`, so routes added later are fuzzed without touching this file.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from scoring_world import trained_world

from features.settings import ApiKey, Settings
from serving.app import create_app
from serving.errors import PROBLEM_JSON
from serving.store import Store

pytestmark = pytest.mark.slow

KEY = "fuzz-key-7c1e0d9a-all-scopes"
# Examples per (operation, generation mode): a keyed request reaches validation and the store,
# an anonymous one only the key check, so it needs fewer.
EXAMPLES = {"admin-key": 40, "no-key": 10}
# Random ids name nothing stored, and random dates are mostly centuries away, so nearly every
# valid request would stop at "unknown customer". Half the positive cases have these fields (in
# the body or the path, on any route) pinned to stored ids and plausible dates, so they go on
# into the store with everything else still random.
KNOWN = {
    "customer_id": "C000042",
    "decision_id": "d-fuzz",
    "timestamp": "2025-06-01T12:00:00Z",
    "signup_date": "2024-05-01",
}
# Schema-valid is not contract-valid (unknown customers, scores out of range, future dates are
# 422), so "positive data is accepted" does not hold here; the matrix tests cover acceptance.
CONFIG = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {"enabled": False}}})


def _openapi() -> dict[str, Any]:
    """The schema as the service publishes it; building the app connects to nothing."""
    return create_app(Settings(database_url="sqlite://")).openapi()


OPENAPI = _openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, methods in OPENAPI["paths"].items()
    for method, operation in methods.items()
]
CASES = [
    pytest.param(f"{method} {path}", mode, auth, id=f"{method} {path} {mode} {auth}")
    for method, path, operation in OPERATIONS
    # An operation without parameters or body has nothing to break.
    for mode in (
        ("positive", "negative")
        if operation.get("parameters") or operation.get("requestBody")
        else ("positive",)
    )
    for auth in EXAMPLES
]


def _pin_known(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: KNOWN[k] if k in KNOWN else _pin_known(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pin_known(item) for item in value]
    return value


def _documented_media_types(case: schemathesis.Case, status: int) -> set[str]:
    responses = OPENAPI["paths"][case.operation.path][case.operation.method.lower()]["responses"]
    response = responses.get(str(status)) or responses.get("default") or {}
    return set(response.get("content", {}))


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """An error response is problem+json with `status`, `title` and `detail`."""
    if response.status_code < 400:
        return None
    documented = _documented_media_types(case, response.status_code)
    if documented and PROBLEM_JSON not in documented:
        return None  # a status documented with its own body, such as /readyz's 503
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_JSON, f"error sent as {content_type!r}, not {PROBLEM_JSON}"
    body = json.loads(response.content)
    assert body.get("status") == response.status_code, f"status field {body.get('status')!r}"
    for field in ("title", "detail"):
        assert isinstance(body.get(field), str) and body[field], f"no {field} in {body}"
    return True


@pytest.fixture
def api_schema(tmp_path: Path) -> schemathesis.BaseSchema:
    """The schema of a ready service: real models, a store holding the world and a decision.

    Fuzzing an app without models would only meet 503s on the scoring routes.
    """
    settings_ = trained_world().settings(
        tmp_path, api_keys=[ApiKey(name="fuzz", key=KEY, scopes=["admin", "crm", "marketing"])]
    )
    with Store(settings_.database_url) as store:
        store.record_decision(
            customer_id=KNOWN["customer_id"],
            offer_id="none",
            model_version="fuzz",
            decision_id=KNOWN["decision_id"],
        )
    # The schemathesis pytest plugin ends the app's lifespan (closing the store) at teardown.
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_), config=CONFIG)


@pytest.mark.parametrize(("label", "mode", "auth"), CASES)
def test_fuzz_operation_answers_within_schema(
    api_schema: schemathesis.BaseSchema, label: str, mode: str, auth: str
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is in app.openapi() but not in /openapi.json"
    secured = bool(operation.definition.raw.get("security"))
    statuses: Counter[int] = Counter()

    @given(
        case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)),
        pin=st.booleans(),
    )
    @settings(
        max_examples=EXAMPLES[auth],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case: schemathesis.Case, pin: bool) -> None:
        if pin and mode == "positive":
            case.path_parameters = _pin_known(case.path_parameters)
            case.body = _pin_known(case.body)
        # A negative case may break the key on purpose (absent, garbage): it must then be refused.
        if not api_schema.is_security_param_negated(case):
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
            if auth == "admin-key":
                headers["X-API-Key"] = KEY
            case.headers = CaseInsensitiveDict(headers)
        response = case.call()
        statuses[response.status_code] += 1
        case.validate_response(response, additional_checks=[problem_details])

    fuzz()
    # Guard against a vacuous run: keys must reach the routes, and their absence must be noticed.
    if secured and auth == "admin-key":
        assert set(statuses) - {401, 403}, f"every keyed request was refused: {statuses}"
    if secured and auth == "no-key" and mode == "positive":
        assert set(statuses) == {401}, statuses


# Error statuses documented with a body of their own rather than a problem.
OWN_ERROR_BODIES = {("GET", "/readyz", "503")}


def test_openapi_documents_errors_as_problems() -> None:
    """What the fuzz checks against: every error an operation can send is in its schema."""
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for method, path, operation in OPERATIONS:
        expected = {"500"}
        if operation.get("security"):
            expected |= {"401", "403"}
        if "requestBody" in operation:
            expected |= {"400", "413", "415", "422"}
        responses = operation["responses"]
        assert expected <= set(responses), (method, path, sorted(responses))
        for status, response in responses.items():
            if status[0] in "45" and (method, path, status) not in OWN_ERROR_BODIES:
                assert response.get("content") == problem, (method, path, status)
    assert "HTTPValidationError" not in OPENAPI["components"]["schemas"]

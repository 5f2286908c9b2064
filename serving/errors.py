"""Every error leaves the service as `application/problem+json` (RFC 9457), never as a 500 page."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from features.contract import ContractError, format_error
from serving.schemas import Problem

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("retain.serving")
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# What each status means on any route; routes may document their own wording (e.g. 404).
_STATUS_MEANING = {
    400: "Body unreadable (not UTF-8) or invalid Content-Length",
    401: "Missing or invalid API key",
    403: "The API key lacks the route's scope",
    413: "Request body or batch over its limit",
    415: "Body is not JSON (Content-Type must be application/json)",
    422: "Request breaks the schema or the data contract",
    500: "Internal error (logged; nothing of the request echoed)",
    503: "Over capacity, or the store is busy or unreachable; retry after Retry-After seconds",
}
RETRY_AFTER_SECONDS = 1


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    } | extra
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = str(exc.detail)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's own words are only "There was an error parsing the body".
        cause = exc.__cause__
        detail = f"body is not UTF-8 (byte 0x{cause.object[cause.start]:02x} at {cause.start})"
    response = problem(exc.status_code, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _field_problem(error: Any) -> dict[str, str]:
    if error.get("type") == "json_invalid":
        # pydantic's location is the byte offset ("body", 42), its message only "JSON decode error".
        offset = error["loc"][-1] if error.get("loc") else 0
        reason = (error.get("ctx") or {}).get("error", "JSON decode error")
        return {"location": "body", "message": f"invalid JSON at position {offset}: {reason}"}
    return {"location": _location(error["loc"]), "message": error["msg"]}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(
        tuple(e["loc"]) == ("body",) and isinstance(e.get("input"), bytes) for e in exc.errors()
    ):
        # FastAPI parses JSON only when the Content-Type says so; otherwise the model gets bytes.
        sent = request.headers.get("content-type") or "none"
        return problem(415, f"expected a JSON body with Content-Type application/json, got {sent}")
    errors = [_field_problem(e) for e in exc.errors()]
    first = errors[0] if errors else {"location": "body", "message": "invalid request"}
    return problem(422, f"{first['location']}: {first['message']}", errors=errors)


async def _contract_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ContractError)
    errors = [format_error(row) for _, row in exc.errors.head(100).iterrows()]
    return problem(422, str(exc), errors=errors)


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # A write that waited out the store's lock, a lost connection, or a decision commit that
    # did not come in time. Retrying is safe: events and outcomes are idempotent, and a retried
    # recommendation is a new decision.
    log.warning("store unavailable: %s", type(exc).__name__)
    return unavailable("The store is busy or unreachable; retry after Retry-After seconds")


def unavailable(detail: str) -> JSONResponse:
    """503 with `Retry-After`: a busy store, or a worker over its in-flight limit."""
    response = problem(503, detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The only 5xx the service sends: logged with its trace, nothing of the request echoed.
    log.exception("unexpected error", exc_info=exc)
    return problem(500, "internal error; it has been logged")


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare in an OpenAPI document the problem+json responses each operation can send.

    FastAPI documents only its own 422 body, which this service never sends, and none of the
    errors raised by dependencies (401/403 from keys) or middleware (413). Idempotent.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            statuses = {500}
            if operation.get("security"):  # keyed routes: 503 when shed or the store is busy
                statuses |= {401, 403, 503}
            if "requestBody" in operation:
                statuses |= {400, 413, 415, 422}
            if operation.get("parameters"):
                statuses.add(422)
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(str(status), {"description": _STATUS_MEANING[status]})
            for code, response in responses.items():
                if code[0] in "45" and (code == "422" or "content" not in response):
                    if code == "422":
                        response["description"] = _STATUS_MEANING[422]
                    response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
            operation["responses"] = dict(sorted(responses.items()))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused not in json.dumps(schema.get("paths", {})):
            components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ContractError, _contract_error)
    app.add_exception_handler(OperationalError, _store_unavailable)
    app.add_exception_handler(TimeoutError, _store_unavailable)  # the decision log's wait
    app.add_exception_handler(Exception, _unexpected)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return document_problems(generate())

    app.openapi = openapi  # type: ignore[method-assign]

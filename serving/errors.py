"""Every error leaves the service as `application/problem+json` (RFC 9457), never as a 500 page."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from features.contract import ContractError, format_error

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("retain.serving")


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
    response = problem(exc.status_code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"location": _location(e["loc"]), "message": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"location": "body", "message": "invalid request"}
    return problem(422, f"{first['location']}: {first['message']}", errors=errors)


async def _contract_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ContractError)
    errors = [format_error(row) for _, row in exc.errors.head(100).iterrows()]
    return problem(422, str(exc), errors=errors)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The only 5xx the service sends: logged with its trace, nothing of the request echoed.
    log.exception("unexpected error", exc_info=exc)
    return problem(500, "internal error; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ContractError, _contract_error)
    app.add_exception_handler(Exception, _unexpected)

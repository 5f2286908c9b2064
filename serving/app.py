"""The HTTP service: `create_app()` wires settings, store, routes and error handling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from features.io import read_offers
from features.settings import Settings, get_settings
from serving import errors
from serving.routes import decisions, events, health
from serving.store import Store

API_DESCRIPTION = """
Churn risk with reasons, next best offers, and the feedback that keeps the policy learning.
Every route but `/healthz`, `/readyz` and `/metrics` needs an `X-API-Key` with the right scope:
`crm` (churn, at-risk, events), `marketing` (offers, outcomes), `admin` (reload).
Errors are `application/problem+json`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application; nothing connects or loads until its lifespan starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.database_url)
        store.create_all()
        app.state.store = store
        app.state.offers = read_offers(settings.offers_path) if settings.offers_path else []
        yield
        store.close()

    app = FastAPI(
        title="Retain",
        version="1",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.model_versions = {}
    errors.install(app)

    @app.middleware("http")
    async def limit_body_size(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (
            not length.isdigit() or int(length) > settings.max_request_bytes
        ):
            return errors.problem(413, f"request body over {settings.max_request_bytes} bytes")
        return await call_next(request)

    for module in (health, events, decisions):
        app.include_router(module.router)
    return app

"""The HTTP service: `create_app()` wires settings, store, routes and error handling."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Gauge, Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.io import read_offers
from features.settings import Settings, get_settings
from serving import errors
from serving.models import ModelSet
from serving.routes import admin, churn, decisions, events, health, kpis, monitor, offers
from serving.scoring import ScoringError, build_service, start_service, stop_service
from serving.store import Store

API_DESCRIPTION = """
Churn risk with reasons, next best offers, and the feedback that keeps the policy learning.
Every route but `/healthz`, `/readyz` and `/metrics` needs an `X-API-Key` with the right scope:
`crm` (churn, at-risk, events), `marketing` (offers, outcomes), `admin` (reload, status, drift).
Errors are `application/problem+json`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application; nothing connects or loads until its lifespan starts."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Checkpoints off the request path: see store._Checkpointer.
        store = Store(settings.database_url, background_checkpoints=True)
        store.create_all()
        app.state.store = store
        app.state.offers = read_offers(settings.offers_path) if settings.offers_path else []
        scoring = build_service(store, app.state.offers, settings)
        app.state.scoring = scoring

        def swapped(models: ModelSet) -> None:
            app.state.model_versions = models.versions()

        start_service(scoring, swapped, served=app.state.served)
        yield
        stop_service(scoring)
        store.close()

    app = FastAPI(
        title="Retain",
        version="1",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.model_versions = {}
    app.state.served = False  # True in `retain serve`'s workers: see scoring.start_service
    errors.install(app)
    app.add_exception_handler(ScoringError, _scoring_error)
    app.add_middleware(LimitBody, limit=settings.max_request_bytes)
    app.add_middleware(RequestMetrics)  # inside the shedding: times the accepted requests
    # added last, so outermost: a shed request costs no body reading or routing
    app.add_middleware(ShedLoad, limit=settings.max_in_flight)
    for module in (health, events, decisions, churn, offers, kpis, admin, monitor):
        app.include_router(module.router)
    return app


async def _scoring_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScoringError)
    return errors.problem(exc.status, exc.detail)


class LimitBody:
    """Refuse a request body over `limit` bytes, announced (Content-Length) or streamed (chunked).

    A streamed body is counted as it is read, so it never has to fit in memory first.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and not length.isdigit():
            await errors.problem(400, "invalid Content-Length header")(scope, receive, send)
            return
        if length is not None and int(length) > self.limit:
            await errors.problem(413, self._over)(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised where the route reads its body; the error handlers make it a problem.
                    raise HTTPException(413, self._over)
            return message

        await self.app(scope, receive_within_limit, send)

    @property
    def _over(self) -> str:
        return f"request body over {self.limit} bytes"


REQUEST_SECONDS = Histogram(
    "retain_request_duration_seconds",
    "Time from a request reaching the app to its response's first byte, per route and status",
    ["method", "route", "status"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("retain_requests_in_flight", "Requests this worker is working on")


class RequestMetrics:
    """Prometheus metrics of the requests a worker works on: duration by route template (not by
    path: one series per route, whatever the customer id) and status, and how many are open.

    The time starts when the worker's event loop reads the request: a wait in the socket before
    that (a worker starved of CPU) shows only in what clients measure.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def send_timed(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                _observe(scope, message["status"], started)
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_timed)
        except Exception:
            if not answered:  # the error handler outside this middleware answers 500
                _observe(scope, 500, started)
            raise
        finally:
            IN_FLIGHT.dec()


def _observe(scope: Scope, status: int, started: float) -> None:
    route = scope.get("route")  # set by the router once it matched
    path = getattr(route, "path", "unmatched")
    REQUEST_SECONDS.labels(scope["method"], path, str(status)).observe(
        time.perf_counter() - started
    )


SHED = Counter(
    "retain_requests_shed",
    "Requests answered 503 at once because the worker had max_in_flight requests in progress",
)


class ShedLoad:
    """Answer 503 (with Retry-After) at once while `limit` requests are in progress in this worker.

    Past capacity a queue only grows: every request waits longer, until clients time out and the
    work done for them is wasted. Refusing the excess keeps the accepted requests fast and tells
    the client when to come back. Paths under `exempt` are never refused: probes (a busy worker
    is alive) and admin calls (an operator's reload must get through an overload). `limit` 0
    turns shedding off. One event loop per worker, so a plain counter is exact.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        exempt: tuple[str, ...] = ("/healthz", "/readyz", "/metrics", "/v1/admin/"),
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            SHED.inc()
            detail = f"over capacity ({self.limit} requests in progress); retry after Retry-After"
            await errors.unavailable(detail)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

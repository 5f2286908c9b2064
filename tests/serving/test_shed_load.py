"""Load shedding (past `max_in_flight` requests in progress a worker answers 503 at once) and
the request metrics beside it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx2 as httpx  # the dev extra's HTTP client (the httpx API)
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from features.settings import Settings
from serving.app import SHED, RequestMetrics, ShedLoad, create_app
from serving.errors import RETRY_AFTER_SECONDS


class HeldApp:
    """An inner app whose requests to /slow wait until released; /boom raises."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        if scope["path"] == "/slow":
            self.entered += 1
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


def _client(app: ASGIApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_requests_over_the_limit_are_refused_at_once_and_accepted_again_after() -> None:
    async def scenario() -> None:
        inner = HeldApp()
        shed = ShedLoad(inner, limit=2)
        shed_before = SHED._value.get()
        async with _client(shed) as client:
            held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
            await _wait_for(lambda: inner.entered == 2)

            refused = await asyncio.wait_for(client.get("/fast"), timeout=5)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
            assert "over capacity (2 requests in progress)" in refused.json()["detail"]
            assert SHED._value.get() == shed_before + 1
            # probes and admin calls are never refused: a busy worker is alive, and an
            # operator's reload must get through an overload
            for path in ("/healthz", "/readyz", "/metrics", "/v1/admin/reload"):
                assert (await client.get(path)).status_code == 200

            inner.release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert shed.in_flight == 0
            assert (await client.get("/fast")).status_code == 200

    asyncio.run(scenario())


def test_a_failing_request_frees_its_place() -> None:
    async def scenario() -> None:
        shed = ShedLoad(HeldApp(), limit=1)
        async with _client(shed) as client:
            for _ in range(3):
                assert (await client.get("/boom")).status_code == 500
            assert shed.in_flight == 0
            assert (await client.get("/fast")).status_code == 200

    asyncio.run(scenario())


def test_limit_zero_never_refuses() -> None:
    async def scenario() -> None:
        inner = HeldApp()
        async with _client(ShedLoad(inner, limit=0)) as client:
            held = [asyncio.create_task(client.get("/slow")) for _ in range(5)]
            await _wait_for(lambda: inner.entered == 5)
            assert (await client.get("/fast")).status_code == 200
            inner.release.set()
            await asyncio.gather(*held)

    asyncio.run(scenario())


def test_the_app_sheds_with_the_configured_limit_outermost() -> None:
    app = create_app(Settings(max_in_flight=7))
    outermost = app.user_middleware[0]
    assert outermost.cls is ShedLoad
    assert outermost.kwargs["limit"] == 7
    assert app.user_middleware[1].cls is RequestMetrics  # times only the accepted requests


# --- request metrics ------------------------------------------------------------------------


def _count(route: str, status: int) -> float:
    labels = {"method": "GET", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("retain_request_duration_seconds_count", labels) or 0.0


def test_request_metrics_time_each_request_by_route_template_and_status() -> None:
    async def item(request: Request) -> PlainTextResponse:
        if request.path_params["item_id"] == "boom":
            raise RuntimeError("boom")
        return PlainTextResponse("ok")

    app = RequestMetrics(Router([Route("/items/{item_id}", item)]))
    series = [("/items/{item_id}", 200), ("unmatched", 404), ("/items/{item_id}", 500)]
    before = {key: _count(*key) for key in series}

    async def scenario() -> None:
        async with _client(app) as client:
            for customer in ("C1", "C2", "C3"):
                assert (await client.get(f"/items/{customer}")).status_code == 200
            assert (await client.get("/nowhere")).status_code == 404
            assert (await client.get("/items/boom")).status_code == 500

    asyncio.run(scenario())
    # one series per route, whatever the id in the path; failures are timed as the 500 they get
    assert _count("/items/{item_id}", 200) == before[("/items/{item_id}", 200)] + 3
    assert _count("unmatched", 404) == before[("unmatched", 404)] + 1
    assert _count("/items/{item_id}", 500) == before[("/items/{item_id}", 500)] + 1
    assert REGISTRY.get_sample_value("retain_requests_in_flight") == 0

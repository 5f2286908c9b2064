"""Liveness, readiness and Prometheus metrics: the only routes without a key."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import StoreDep
from serving.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Readiness}})
def readyz(request: Request, store: StoreDep, response: Response) -> Readiness:
    """The store answers and the models are loaded."""
    try:
        with store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        store_ok = True
    except sa.exc.SQLAlchemyError:
        store_ok = False
    models: dict[str, str | None] = dict(request.app.state.model_versions)
    ready = store_ok and all(version is not None for version in models.values())
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, store=store_ok, models=models)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics of this worker."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

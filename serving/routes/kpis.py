"""Business KPIs over the store's data: retention, churn, NPS, CSAT, CLTV, revenue."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from serving.deps import CrmKey, ScoringDep
from serving.schemas import Kpis
from training.kpis import METRICS

router = APIRouter(prefix="/v1", tags=["kpis"])

Metric = Literal[
    "active_customers",
    "churn_rate",
    "retention_rate",
    "nps",
    "csat_mean",
    "csat_satisfied_share",
    "cltv_12m",
    "revenue",
]
assert set(Metric.__args__) == set(METRICS)  # type: ignore[attr-defined]


@router.get("/kpis", response_model=Kpis)
def kpis(
    _: CrmKey,
    scoring: ScoringDep,
    dimension: Annotated[Literal["all", "segment", "cohort"], Query()] = "all",
    metric: Annotated[Metric | None, Query(description="One metric (default: all).")] = None,
    periods: Annotated[int, Query(ge=1, le=120, description="Latest months returned.")] = 12,
) -> Kpis:
    """Monthly KPIs by segment or cohort; recomputed at most every `kpi_cache_seconds`."""
    return scoring.kpis(dimension=dimension, metric=metric, periods=periods)

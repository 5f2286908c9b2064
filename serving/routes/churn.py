"""Churn risk: one customer or many, online; the latest batch run's at-risk list."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from serving.deps import CrmKey, ScoringDep
from serving.schemas import AtRiskPage, ChurnBatchIn, ChurnBatchOut, ChurnScore

router = APIRouter(prefix="/v1", tags=["churn"])

CustomerId = Annotated[str, Path(min_length=1, max_length=200, examples=["C000042"])]
_CSV_COLUMNS = [
    "customer_id",
    "segment",
    "risk",
    "band",
    "reason_1",
    "reason_2",
    "reason_3",
    "clv",
    "best_action",
    "best_action_value",
]


@router.get(
    "/customers/{customer_id}/churn",
    response_model=ChurnScore,
    responses={
        404: {"description": "No such customer"},
        503: {"description": "No churn model loaded"},
    },
)
async def customer_churn(customer_id: CustomerId, _: CrmKey, scoring: ScoringDep) -> ChurnScore:
    """Calibrated churn risk, band, reasons and CLV of a customer, from features as of now."""
    return await scoring.churn_async(customer_id)


@router.post(
    "/churn/score",
    response_model=ChurnBatchOut,
    responses={503: {"description": "No churn model loaded"}},
)
def score_customers(batch: ChurnBatchIn, _: CrmKey, scoring: ScoringDep) -> ChurnBatchOut:
    """Score many customers at once (at most the configured batch size); unknown ids listed."""
    return scoring.churn_many(batch.customer_ids)


@router.get(
    "/at-risk",
    response_model=AtRiskPage,
    responses={
        200: {"content": {"text/csv": {"example": "customer_id,segment,risk,band,...\n"}}},
        404: {"description": "No batch scoring run yet (`retain score`)"},
    },
)
def at_risk(
    request: Request,
    _: CrmKey,
    scoring: ScoringDep,
    min_risk: Annotated[
        float | None, Query(ge=0, le=1, description="Default: the high band's threshold.")
    ] = None,
    segment: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    format: Annotated[
        Literal["json", "csv"] | None, Query(description="csv, or send Accept: text/csv.")
    ] = None,
) -> AtRiskPage | Response:
    """Customers at or above a risk threshold in the latest batch run, riskiest first; paged."""
    page, rows = scoring.at_risk(min_risk=min_risk, segment=segment, limit=limit, offset=offset)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if not wants_csv:
        return page
    text = rows.reindex(columns=_CSV_COLUMNS).to_csv(index=False)
    headers = {"X-Total-Count": str(page.total), "X-Scores-As-Of": page.as_of}
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)

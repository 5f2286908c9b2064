"""Feedback from marketing tools: what became of a decision."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from serving.deps import MarketingKey, StoreDep
from serving.schemas import OutcomeIn, OutcomeOut
from serving.store import UnknownDecision

router = APIRouter(prefix="/v1", tags=["offers"])


@router.post(
    "/decisions/{decision_id}/outcome",
    response_model=OutcomeOut,
    responses={404: {"description": "No such decision"}},
)
def record_outcome(
    decision_id: str, outcome: OutcomeIn, _: MarketingKey, store: StoreDep
) -> OutcomeOut:
    """Report the reward of a decision (redeemed, declined, retained, churned); idempotent."""
    try:
        recorded = store.record_outcome(decision_id, outcome.kind, outcome.value)
    except UnknownDecision:
        raise HTTPException(404, f"no decision {decision_id[:64]!r}") from None
    return OutcomeOut(decision_id=decision_id, kind=outcome.kind, recorded=recorded)

"""Next best offer: rules, expected net value, exploration, and the logged decision."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import MarketingKey, ScoringDep
from serving.schemas import Recommendation, RecommendIn

router = APIRouter(prefix="/v1", tags=["offers"])


@router.post(
    "/offers/recommend",
    response_model=Recommendation,
    responses={
        404: {"description": "No such customer"},
        503: {"description": "No next-offer or CLV model, or no offers catalog"},
    },
)
async def recommend(request: RecommendIn, _: MarketingKey, scoring: ScoringDep) -> Recommendation:
    """Top-k eligible actions by expected net value; one chosen (epsilon-greedy) and logged."""
    return await scoring.recommend_async(request)

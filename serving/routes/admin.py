"""Operations: reload models by alias, inspect what is loaded and how warm the caches are."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from serving.deps import AdminKey, ScoringDep
from serving.models import ModelHolder
from serving.online import FeatureCache
from serving.schemas import FeatureCacheStatus, LoadedModelInfo, ModelsStatus, ServiceStatus
from serving.scoring import aware

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def models_status(holder: ModelHolder) -> ModelsStatus:
    current = holder.current
    return ModelsStatus(
        alias=current.alias,
        generation=current.generation,
        loaded_at=current.loaded_at,
        models=current.versions(),
        details={
            name: LoadedModelInfo(
                version=str(m.version), run_id=m.run_id, feature_set=m.feature_set
            )
            for name, m in current.loaded.items()
        },
        errors=dict(current.errors),
    )


def cache_status(cache: FeatureCache, reasons_missing: int) -> FeatureCacheStatus:
    status = cache.status
    last = status.last_completed_at
    return FeatureCacheStatus(
        cached_customers=len(cache),
        warming=status.running,
        warmed_customers=status.customers_done,
        total_customers=status.customers_total,
        rounds_completed=status.rounds_completed,
        last_completed_at=None if last is None else aware(last),
        reasons_computed=status.reasons_done,
        reasons_missing=reasons_missing,
        blocks=len(cache.blocks()),
        compute_runs=cache.stats.runs,
        refreshed_customers=cache.stats.refreshed,
        waited_customers=cache.stats.waited,
        compactions=cache.stats.compactions,
    )


@router.post("/reload", response_model=ModelsStatus)
async def reload_models(_: AdminKey, scoring: ScoringDep) -> ModelsStatus:
    """Reload every model by its alias and swap them in atomically (in-flight requests finish on
    the models they started with); the other worker processes follow within a second."""
    # Its own thread, not the request pool: under load that pool is full, and a reload must
    # not queue behind the traffic it is meant to change.
    await asyncio.to_thread(scoring.reload_models)
    return models_status(scoring.models)


@router.get("/status", response_model=ServiceStatus)
def status(_: AdminKey, scoring: ScoringDep) -> ServiceStatus:
    """Loaded model versions and the online feature cache's warm-up."""
    return ServiceStatus(
        models=models_status(scoring.models),
        features=cache_status(scoring.cache, scoring.reasons_missing()),
    )

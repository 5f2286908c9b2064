"""Interactions and customers pushed by CRM systems."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter, HTTPException

from features.contract import ContractError, validate_customers, validate_events
from serving.deps import CrmKey, OffersDep, ScoringDep, SettingsDep, StoreDep
from serving.schemas import CustomerBatch, EventBatch, IngestOut, UpsertOut

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", response_model=IngestOut)
def ingest_events(
    batch: EventBatch,
    _: CrmKey,
    store: StoreDep,
    offers: OffersDep,
    settings: SettingsDep,
    scoring: ScoringDep,
) -> IngestOut:
    """Ingest interactions; idempotent by event_id. A batch with a bad event stores nothing."""
    if len(batch.events) > settings.max_batch_events:
        raise HTTPException(413, f"at most {settings.max_batch_events} events per request")
    raw = pd.DataFrame([event.model_dump() for event in batch.events])
    known = store.known_customer_ids(raw["customer_id"])
    checked = validate_events(
        raw,
        customer_ids=pd.Series(sorted(known), dtype="str"),
        offer_ids=[offer.offer_id for offer in offers] if offers else None,
        source="request",
    )
    if not checked.errors.empty:
        raise ContractError(checked.errors.assign(column="events." + checked.errors["column"]))
    result = store.ingest_events(checked.valid)
    if result.inserted:
        # Their next score needs new features: computed now, in the background, not by it.
        scoring.cache.refresh(checked.valid["customer_id"].astype(str).unique().tolist())
    return IngestOut(inserted=result.inserted, duplicates=result.duplicates)


@router.post("/customers", response_model=UpsertOut)
def upsert_customers(batch: CustomerBatch, _: CrmKey, store: StoreDep) -> UpsertOut:
    """Create or replace customers (fields of the data contract; extra fields are attributes)."""
    raw = pd.DataFrame([customer.model_dump() for customer in batch.customers])
    checked = validate_customers(raw, source="request")
    if not checked.errors.empty:
        # Named as in the body, like the events route does: `customers.country`.
        raise ContractError(checked.errors.assign(column="customers." + checked.errors["column"]))
    return UpsertOut(written=store.upsert_customers(checked.valid))

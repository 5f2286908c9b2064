"""Request and response bodies of the HTTP API (they become the OpenAPI schema)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OutcomeKind = Literal["redeemed", "declined", "retained", "churned"]


class EventIn(BaseModel):
    """One interaction, as in the data contract's `events` table."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "e-1001",
                    "customer_id": "C000042",
                    "timestamp": "2026-09-01T10:15:00Z",
                    "event_type": "purchase",
                    "amount": 59.9,
                    "channel": "web",
                }
            ]
        },
    )

    event_id: str | None = Field(None, max_length=200, description="Idempotency key.")
    customer_id: str = Field(min_length=1, max_length=200)
    timestamp: datetime = Field(description="ISO 8601; naive values are UTC.")
    event_type: str = Field(min_length=1, max_length=100)
    amount: float | None = Field(None, description="Money, >= 0; for purchase and refund.")
    channel: str | None = Field(None, max_length=100)
    offer_id: str | None = Field(None, max_length=200)
    propensity: float | None = Field(None, description="In (0, 1], for offer_sent.")
    score: float | None = Field(None, description="nps 0-10, csat 1-5.")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class IngestOut(BaseModel):
    inserted: int = Field(description="Events newly stored.")
    duplicates: int = Field(description="Events whose event_id was already stored (skipped).")


class CustomerIn(BaseModel):
    """One customer, as in the data contract's `customers` table; extra fields are attributes."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C000042",
                    "signup_date": "2024-05-01",
                    "country": "DE",
                    "language": "de",
                    "segment": "retail",
                    "loyalty_member": True,
                    "marketing_consent": True,
                }
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=200)
    signup_date: date | datetime
    country: str | None = None
    language: str | None = None
    segment: str | None = None
    loyalty_member: bool | None = None
    marketing_consent: bool | None = None


class CustomerBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[CustomerIn] = Field(min_length=1)


class UpsertOut(BaseModel):
    written: int


class OutcomeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"kind": "redeemed", "value": 12.5}]}
    )

    kind: OutcomeKind
    value: float | None = Field(None, allow_inf_nan=False, description="e.g. revenue attributed.")


class OutcomeOut(BaseModel):
    decision_id: str
    kind: OutcomeKind
    recorded: bool = Field(description="False when this outcome was already recorded.")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    store: bool
    models: dict[str, str | None] = Field(description="Model name -> loaded version.")

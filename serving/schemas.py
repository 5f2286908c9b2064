"""Request and response bodies of the HTTP API (they become the OpenAPI schema)."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

OutcomeKind = Literal["redeemed", "declined", "retained", "churned"]


def _not_boolean(value: object) -> object:
    # JSON `true` would otherwise pass as the number 1.0.
    if isinstance(value, bool):
        raise PydanticCustomError("not_boolean", "Input should be a number, not a boolean")
    return value


def _scalar(value: object) -> object:
    if (
        value is None
        or isinstance(value, str | int)
        or (isinstance(value, float) and math.isfinite(value))
    ):
        return value
    raise PydanticCustomError(
        "scalar_attribute", "An attribute should be a string, a finite number, a boolean or null"
    )


def _iso_text(value: object) -> object:
    # pydantic reads a number, or a string of digits such as "20240101", as Unix time: 1970-08-23.
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        raise PydanticCustomError(
            "iso_8601",
            "Input should be an ISO 8601 date or datetime such as 2025-01-31, not a number",
        )
    return value


# A finite JSON number: `NaN` and `Infinity`, which Python's JSON parser accepts, are refused.
Number = Annotated[float, BeforeValidator(_not_boolean), Field(allow_inf_nan=False)]
# Dates as ISO 8601 text only.
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_text)]
IsoDate = Annotated[date | datetime, BeforeValidator(_iso_text)]
# An extra customer field, kept as a static attribute (a feature): a scalar, as in the contract.
Attribute = Annotated[str | bool | int | float | None, BeforeValidator(_scalar)]


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
    timestamp: IsoDatetime = Field(description="ISO 8601; naive values are UTC.")
    event_type: str = Field(min_length=1, max_length=100)
    amount: Number | None = Field(None, description="Money, >= 0; for purchase and refund.")
    channel: str | None = Field(None, max_length=100)
    offer_id: str | None = Field(None, max_length=200)
    propensity: Number | None = Field(None, description="In (0, 1], for offer_sent.")
    score: Number | None = Field(None, description="nps 0-10, csat 1-5.")


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

    __pydantic_extra__: dict[str, Attribute] = Field(init=False)

    customer_id: str = Field(min_length=1, max_length=200)
    signup_date: IsoDate
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
    value: Number | None = Field(None, description="e.g. revenue attributed.")


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


class FieldProblem(BaseModel):
    location: str = Field(description="Where in the request, e.g. `events.0.timestamp`.")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 `application/problem+json`: every 4xx and 5xx the service sends."""

    type: str = "about:blank"
    title: str = Field(description="The HTTP status phrase.")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What was wrong, naming the field, row or limit.")
    errors: list[str] | list[FieldProblem] | None = Field(
        None, description="Every problem found (request validation or data contract)."
    )

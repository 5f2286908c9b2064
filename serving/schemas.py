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


# --- scoring and offers ----------------------------------------------------------------------

RiskBand = Literal["low", "medium", "high"]
_VERSIONS = "Model name -> registered version used (null when not loaded)."


class ChurnScore(BaseModel):
    """A customer's churn risk, as the champion models see them now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C000042",
                    "risk": 0.71,
                    "band": "high",
                    "reasons": [
                        "no purchase for 74 days",
                        "2 unresolved complaints",
                        "NPS fell to 3",
                    ],
                    "clv": 412.5,
                    "as_of": "2026-11-23T09:30:00",
                    "horizon_days": 90,
                    "feature_set": "churn_features:2",
                    "models": {"churn-risk": "3", "clv": "2"},
                }
            ]
        }
    )

    customer_id: str
    risk: float = Field(ge=0, le=1, description="Calibrated P(churn within horizon_days).")
    band: RiskBand = Field(description="low / medium / high, by the configured thresholds.")
    reasons: list[str] = Field(description="Up to 3 drivers of this customer's risk, in words.")
    clv: float | None = Field(description="Predicted revenue over the next 365 days.")
    as_of: datetime = Field(description="UTC time the features were computed at.")
    horizon_days: int
    feature_set: str = Field(description="Feature set name and version.")
    models: dict[str, str | None] = Field(description=_VERSIONS)


class ChurnBatchIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"customer_ids": ["C000042", "C000043"]}]}
    )

    customer_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, description="Customers to score (at most the configured batch limit)."
    )


class ChurnBatchOut(BaseModel):
    scores: list[ChurnScore]
    unknown: list[str] = Field(description="Requested ids the store does not hold.")


class RecommendContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(None, max_length=100, description="e.g. email, app, phone.")
    language: str | None = Field(
        None,
        min_length=2,
        max_length=35,
        description="Language of the messages (default: the customer's).",
    )


class RecommendIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C000042",
                    "context": {"channel": "email", "language": "de"},
                    "k": 3,
                }
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=200)
    context: RecommendContext = Field(default_factory=RecommendContext)
    k: int = Field(3, ge=1, description="How many actions to return.")


class OfferAction(BaseModel):
    offer_id: str = Field(description="A catalog offer, or `none` (do nothing).")
    kind: str
    expected_value: float = Field(
        description="Expected net value against doing nothing: uplift x CLV - expected cost."
    )
    probability: float = Field(description="Probability the policy gives this action.")
    message: str | None = Field(description="The offer's text in the response language.")
    marketing: bool


class Recommendation(BaseModel):
    """The chosen action (first in `actions`) and the best alternatives, logged as a decision."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "decision_id": "5f0c9a7e2b1d4c3e8f6a9b0c1d2e3f40",
                    "customer_id": "C000042",
                    "offer_id": "free_shipping",
                    "propensity": 0.92,
                    "explored": False,
                    "language": "de",
                    "channel": "email",
                    "actions": [
                        {
                            "offer_id": "free_shipping",
                            "kind": "free_shipping",
                            "expected_value": 18.4,
                            "probability": 0.92,
                            "message": "Kostenloser Versand für Ihre nächsten drei Bestellungen",
                            "marketing": True,
                        },
                        {
                            "offer_id": "none",
                            "kind": "none",
                            "expected_value": 0.0,
                            "probability": 0.02,
                            "message": None,
                            "marketing": False,
                        },
                    ],
                    "as_of": "2026-11-23T09:30:00",
                    "feature_set": "churn_features:2",
                    "models": {"churn-risk": "3", "clv": "2", "next-offer": "1"},
                }
            ]
        }
    )

    decision_id: str = Field(description="Report its outcome to /v1/decisions/{id}/outcome.")
    customer_id: str
    offer_id: str = Field(description="The chosen action.")
    propensity: float = Field(gt=0, le=1, description="Probability it was chosen with.")
    explored: bool = Field(description="True when exploration overrode the best action.")
    language: str
    channel: str | None
    actions: list[OfferAction] = Field(description="Chosen action first, then by value.")
    as_of: datetime = Field(description="UTC time the features were computed at.")
    feature_set: str
    models: dict[str, str | None] = Field(description=_VERSIONS)


class AtRiskItem(BaseModel):
    customer_id: str
    segment: str | None
    risk: float
    band: RiskBand
    reasons: list[str]
    clv: float | None
    best_action: str | None = Field(description="Best eligible action at the run's date.")
    best_action_value: float | None


class AtRiskPage(BaseModel):
    """One page of the latest batch scoring run, riskiest first."""

    as_of: str = Field(description="Date of the batch scoring run.")
    min_risk: float
    segment: str | None
    total: int = Field(description="Customers matching, over all pages.")
    limit: int
    offset: int
    models: dict[str, str | None] = Field(description=_VERSIONS)
    items: list[AtRiskItem]


class KpiRow(BaseModel):
    period: date = Field(description="First day of the month.")
    dimension: str = Field(description="all, segment or cohort.")
    group: str
    metric: str
    value: float | None
    n: int = Field(description="Customers or answers behind the value.")


class Kpis(BaseModel):
    computed_at: datetime = Field(description="When the cached table was computed (UTC).")
    rows: list[KpiRow]


class LoadedModelInfo(BaseModel):
    version: str
    run_id: str
    feature_set: str


class ModelsStatus(BaseModel):
    alias: str
    generation: int = Field(description="Increases with every reload.")
    loaded_at: datetime
    models: dict[str, str | None] = Field(description=_VERSIONS)
    details: dict[str, LoadedModelInfo]
    errors: dict[str, str] = Field(description="Why a model is not loaded.")


class FeatureCacheStatus(BaseModel):
    cached_customers: int
    warming: bool
    warmed_customers: int
    total_customers: int
    rounds_completed: int
    last_completed_at: datetime | None
    reasons_computed: int
    reasons_missing: int = Field(description="Cached rows without reason codes yet.")
    blocks: int = Field(0, description="Distinct blocks of rows the cache holds.")
    compute_runs: int = Field(0, description="Feature runs for misses and changed customers.")
    refreshed_customers: int = Field(
        0, description="Rows recomputed because the customer's events changed (no request)."
    )
    waited_customers: int = Field(0, description="Rows requests waited for (cache misses).")
    compactions: int = Field(0, description="Merges of small blocks into one.")


class ServiceStatus(BaseModel):
    models: ModelsStatus
    features: FeatureCacheStatus


# --- drift monitoring (`retain monitor`) --------------------------------------------------------

DriftStatus = Literal["ok", "warning", "critical"]


class FeatureDrift(BaseModel):
    feature: str = Field(description="Feature name; `churn_risk` for the score.")
    kind: Literal["numeric", "categorical", "score"]
    psi: float = Field(ge=0, description="Population stability index, training -> current.")
    status: DriftStatus
    missing_reference: float = Field(description="Share of missing values in the training data.")
    missing_current: float = Field(description="Share of missing values in the current data.")


class DriftThresholds(BaseModel):
    warning: float
    critical: float


class DriftReport(BaseModel):
    """The latest `retain monitor` run: training data vs the customers active at `as_of`."""

    status: DriftStatus = Field(description="The worst status over the score and the features.")
    max_psi: float
    noise_floor: float = Field(
        description="PSI a decile-binned feature shows from sampling alone, with no drift."
    )
    as_of: date = Field(description="Date the current features were computed at.")
    created_at: datetime = Field(description="When the monitoring run ran (UTC).")
    model: str = Field(description="Registered model monitored, e.g. churn-risk.")
    model_version: str
    model_alias: str
    reference_cutoffs: list[date] = Field(description="Training cutoffs of the model.")
    n_reference: int = Field(description="Training rows compared.")
    n_current: int = Field(description="Active customers compared.")
    thresholds: DriftThresholds
    counts: dict[DriftStatus, int] = Field(description="Features (score included) per status.")
    score: FeatureDrift | None = Field(description="Drift of the churn-risk score distribution.")
    features: list[FeatureDrift] = Field(description="Every feature, highest PSI first.")
    mlflow_run_id: str | None = Field(description="The run in the `monitoring` experiment.")

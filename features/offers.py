"""The offers catalog: retention actions with costs, messages and eligibility rules."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.contract import ERROR_COLUMNS, NO_OFFER, ContractError


class Eligibility(BaseModel):
    """Who may receive an offer; an absent rule admits everyone."""

    model_config = ConfigDict(extra="forbid")

    segments: list[str] | None = None
    countries: list[str] | None = None
    min_tenure_days: int | None = Field(None, ge=0)
    loyalty_member: bool | None = None


class Offer(BaseModel):
    """One retention action of the catalog (data contract, `offers`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offer_id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    cost: float = Field(ge=0, allow_inf_nan=False)
    contact_cost: float = Field(0.0, ge=0, allow_inf_nan=False)
    marketing: bool = True
    messages: dict[str, str] = Field(min_length=1)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    max_per_customer_30d: int | None = Field(None, ge=0)
    budget: float | None = Field(None, ge=0, allow_inf_nan=False)

    @field_validator("offer_id")
    @classmethod
    def _not_the_implicit_action(cls, offer_id: str) -> str:
        if offer_id == NO_OFFER:
            raise ValueError(f"'{NO_OFFER}' is the implicit do-nothing action, not a catalog offer")
        return offer_id

    def message_for(self, language: str) -> str | None:
        """The message in `language` (or its base language, `de` for `de-CH`), if any."""
        return self.messages.get(language) or self.messages.get(language.split("-")[0])


def parse_catalog(entries: list[dict[str, Any]], *, source: str = "offers") -> list[Offer]:
    """Validate raw catalog entries; every bad field is reported, naming the offer and field."""
    errors: list[dict[str, Any]] = []
    offers: list[Offer] = []
    for position, entry in enumerate(entries, start=1):
        try:
            offers.append(Offer.model_validate(entry))
        except ValidationError as exc:
            for problem in exc.errors():
                field = ".".join(str(part) for part in problem["loc"]) or "offer"
                errors.append(
                    {"file": source, "row": position, "column": field, "reason": problem["msg"]}
                )
    seen: set[str] = set()
    for position, offer in enumerate(offers, start=1):
        if offer.offer_id in seen:
            errors.append(
                {
                    "file": source,
                    "row": position,
                    "column": "offer_id",
                    "reason": f"duplicate offer_id {offer.offer_id}",
                }
            )
        seen.add(offer.offer_id)
    if errors:
        raise ContractError(pd.DataFrame(errors, columns=ERROR_COLUMNS))
    return offers


def catalog_from_table(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a CSV catalog to raw entries: `message_<lang>` columns become `messages`,
    `eligible_<rule>` columns become `eligibility` (lists separated by `|`)."""
    entries = []
    for record in table.to_dict("records"):
        entry: dict[str, Any] = {"messages": {}, "eligibility": {}}
        for key, value in record.items():
            if pd.isna(value):
                continue
            if str(key).startswith("message_"):
                entry["messages"][str(key).removeprefix("message_")] = value
            elif str(key).startswith("eligible_"):
                rule = str(key).removeprefix("eligible_")
                is_list = rule in ("segments", "countries")
                entry["eligibility"][rule] = str(value).split("|") if is_list else value
            else:
                entry[str(key)] = value
        entries.append(entry)
    return entries

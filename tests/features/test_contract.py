"""Every kind of bad row is named by file, row, column and reason; good rows pass typed."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract import ContractError, format_error, validate_customers, validate_events

NOW = pd.Timestamp("2026-01-01")
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["C1", "C2"],
        "signup_date": ["2024-01-05", "2024-03-01"],
        "country": ["de", "FR"],
        "language": ["de", None],
        "segment": ["retail", "business"],
        "loyalty_member": ["true", "0"],
        "marketing_consent": ["yes", "no"],
        "age": ["41", "33"],
    }
)
GOOD_EVENT = {
    "event_id": "e1",
    "customer_id": "C1",
    "timestamp": "2025-06-01T10:00:00",
    "event_type": "purchase",
    "amount": "12.5",
    "channel": "web",
    "offer_id": None,
    "propensity": None,
    "score": None,
}


def events_with(**bad: object) -> pd.DataFrame:
    """Two good events and, as row 3, one with the given fields changed."""
    second = GOOD_EVENT | {"event_id": "e2", "event_type": "visit", "amount": None}
    third = GOOD_EVENT | {"event_id": "e3"} | bad
    return pd.DataFrame([GOOD_EVENT, second, third])


def test_validate_customers_types_good_rows() -> None:
    result = validate_customers(CUSTOMERS, now=NOW)
    assert result.errors.empty
    valid = result.valid
    assert valid["country"].tolist() == ["DE", "FR"]
    assert valid["language"].tolist() == ["de", "en"]  # contract default
    assert valid["loyalty_member"].tolist() == [True, False]
    assert valid["marketing_consent"].dtype == bool
    assert "age" in valid.columns  # extra columns are kept as static attributes
    assert pd.api.types.is_datetime64_any_dtype(valid["signup_date"])


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"customer_id": "C1"}, "customer_id", "duplicate customer_id C1"),
        ({"customer_id": None}, "customer_id", "missing customer_id"),
        ({"signup_date": "last tuesday"}, "signup_date", "unparseable date"),
        ({"signup_date": "2030-01-01"}, "signup_date", "in the future"),
        ({"country": "Germany"}, "country", "not an ISO 3166-1 alpha-2 code"),
        ({"language": "german!"}, "language", "not an ISO 639-1"),
        ({"loyalty_member": "maybe"}, "loyalty_member", "not a boolean"),
    ],
)
def test_validate_customers_names_bad_row(change: dict, column: str, reason: str) -> None:
    bad = CUSTOMERS.iloc[[1]].assign(customer_id="C3").assign(**change)
    result = validate_customers(
        pd.concat([CUSTOMERS, bad], ignore_index=True), source="customers.csv", now=NOW
    )
    assert len(result.valid) == 2
    error = result.errors.iloc[0]
    assert (error["file"], error["row"], error["column"]) == ("customers.csv", 3, column)
    assert reason in error["reason"]
    assert format_error(error).startswith(f"customers.csv: row 3, column {column}: ")


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"customer_id": "C9"}, "customer_id", "unknown customer C9"),
        ({"customer_id": " "}, "customer_id", "missing customer_id"),
        ({"timestamp": "2027-01-01T00:00:00"}, "timestamp", "in the future"),
        ({"timestamp": "31/31/2025"}, "timestamp", "unparseable date"),
        ({"timestamp": None}, "timestamp", "missing timestamp"),
        ({"event_type": None}, "event_type", "missing event_type"),
        ({"amount": "-3.5"}, "amount", "negative amount -3.5"),
        ({"amount": None}, "amount", "missing amount for purchase"),
        ({"amount": "12,5 EUR"}, "amount", "not a number"),
        ({"amount": "inf"}, "amount", "not a finite number"),
        ({"event_type": "nps", "amount": None, "score": "11"}, "score", "nps score 11.0 out"),
        ({"event_type": "csat", "amount": None, "score": "0"}, "score", "csat score 0.0 out"),
        ({"event_type": "nps", "amount": None, "score": None}, "score", "missing score for nps"),
        ({"event_type": "offer_sent", "amount": None}, "offer_id", "missing offer_id"),
        ({"event_type": "offer_sent", "offer_id": "bogus"}, "offer_id", "unknown offer bogus"),
        (
            {"event_type": "offer_sent", "offer_id": "gift", "propensity": "0"},
            "propensity",
            "not in (0, 1]",
        ),
        (
            {"event_type": "offer_sent", "offer_id": "gift", "propensity": "1.2"},
            "propensity",
            "not in (0, 1]",
        ),
        ({"event_id": "e1"}, "event_id", "duplicate event_id e1"),
    ],
)
def test_validate_events_names_bad_row(change: dict, column: str, reason: str) -> None:
    result = validate_events(
        events_with(**change),
        customer_ids=CUSTOMERS["customer_id"],
        offer_ids=["gift"],
        source="events.csv",
        now=NOW,
    )
    assert len(result.valid) == 2, result.errors
    error = result.errors.iloc[0]
    assert (error["file"], error["row"], error["column"]) == ("events.csv", 3, column)
    assert reason in error["reason"]


def test_validate_events_reports_every_problem_of_a_row() -> None:
    result = validate_events(
        events_with(amount="-1", customer_id="C9"), customer_ids=CUSTOMERS["customer_id"], now=NOW
    )
    assert sorted(result.errors["column"]) == ["amount", "customer_id"]
    assert list(result.rejected_rows) == [2]


def test_validate_events_converts_offsets_to_naive_utc() -> None:
    result = validate_events(events_with(timestamp="2025-06-01T12:00:00+02:00"), now=NOW)
    assert result.valid["timestamp"].iloc[2] == pd.Timestamp("2025-06-01T10:00:00")
    assert result.valid["timestamp"].dt.tz is None


def test_validate_events_derives_stable_event_id_when_absent() -> None:
    events = events_with().drop(columns="event_id")
    first = validate_events(events, now=NOW).valid["event_id"]
    again = validate_events(events, now=NOW).valid["event_id"]
    assert first.is_unique
    assert first.tolist() == again.tolist()


def test_validate_events_derives_id_only_where_missing() -> None:
    events = events_with(event_id=None)
    ids = validate_events(events, now=NOW).valid["event_id"]
    assert ids.iloc[:2].tolist() == ["e1", "e2"]
    assert ids.iloc[2].startswith("h") and len(ids.iloc[2]) > 1


def test_validate_events_refuses_missing_required_column() -> None:
    result = validate_events(events_with().drop(columns="timestamp"), now=NOW)
    assert result.valid.empty
    assert result.errors.iloc[0]["column"] == "timestamp"
    with pytest.raises(ContractError, match="header, column timestamp: required column"):
        raise ContractError(result.errors)

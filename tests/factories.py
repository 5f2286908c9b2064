"""Small hand-made frames in contract dtypes (as `features.io` would load them).

`customers_frame(customer(...), ...)` and `events_frame(event(...), ...)` build tables row by row;
`random_world(seed)` builds a small random history for property and parity tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.contract import EVENT_COLUMNS, EVENT_TYPES

T0 = pd.Timestamp("2025-06-01")  # a default cutoff
DAY = pd.Timedelta(days=1)

CUSTOMER_DTYPES = {
    "customer_id": "str",
    "signup_date": "datetime64[us]",
    "country": "str",
    "language": "str",
    "segment": "str",
    "loyalty_member": "bool",
    "marketing_consent": "bool",
}
EVENT_DTYPES = {
    "event_id": "str",
    "customer_id": "str",
    "timestamp": "datetime64[us]",
    "event_type": "str",
    "amount": "float64",
    "channel": "str",
    "offer_id": "str",
    "propensity": "float64",
    "score": "float64",
}


def customer(
    customer_id: str = "C1",
    signup_date: str | pd.Timestamp = "2024-01-01",
    *,
    country: str | None = "DE",
    language: str = "de",
    segment: str | None = "retail",
    loyalty_member: bool = False,
    marketing_consent: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One customers row; keyword extras become static attribute columns."""
    return {
        "customer_id": customer_id,
        "signup_date": pd.Timestamp(signup_date),
        "country": country,
        "language": language,
        "segment": segment,
        "loyalty_member": loyalty_member,
        "marketing_consent": marketing_consent,
        **extra,
    }


def customers_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    """A customers table in contract dtypes (default: one customer C1)."""
    frame = pd.DataFrame(list(rows) or [customer()])
    return frame.astype({c: t for c, t in CUSTOMER_DTYPES.items() if c in frame})


def event(
    customer_id: str,
    timestamp: str | pd.Timestamp,
    event_type: str,
    *,
    amount: float | None = None,
    offer_id: str | None = None,
    score: float | None = None,
    channel: str | None = "web",
    propensity: float | None = None,
) -> dict[str, Any]:
    """One events row; `amount`, `offer_id`, `score` only where the type needs them."""
    return {
        "customer_id": customer_id,
        "timestamp": pd.Timestamp(timestamp),
        "event_type": event_type,
        "amount": np.nan if amount is None else amount,
        "channel": channel,
        "offer_id": offer_id,
        "propensity": np.nan if propensity is None else propensity,
        "score": np.nan if score is None else score,
    }


def events_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    """An events table in contract dtypes, with event ids e1, e2, ..."""
    frame = pd.DataFrame(list(rows), columns=[c for c in EVENT_COLUMNS if c != "event_id"])
    frame.insert(0, "event_id", [f"e{i}" for i in range(1, len(frame) + 1)])
    return frame.astype(EVENT_DTYPES)


def entities_frame(*pairs: tuple[str, str | pd.Timestamp]) -> pd.DataFrame:
    """A (customer_id, cutoff) entity frame."""
    return pd.DataFrame(
        {
            "customer_id": pd.array([c for c, _ in pairs], dtype="str"),
            "cutoff": pd.DatetimeIndex([pd.Timestamp(t) for _, t in pairs]).as_unit("us"),
        }
    )


def random_world(
    seed: int = 0,
    *,
    n_customers: int = 40,
    events_per_customer: int = 60,
    start: str = "2024-01-01",
    end: str = "2025-12-31",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small random history using every event type, ties and edge values included.

    Timestamps fall on whole hours (so some events share a timestamp); scores and amounts
    follow the contract; a few offers are the `none` control; one type is outside the vocabulary.
    """
    rng = np.random.default_rng(seed)
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    ids = [f"C{i:03d}" for i in range(n_customers)]
    span_h = int((t1 - t0) / pd.Timedelta(hours=1))
    signup = t0 + pd.to_timedelta(rng.integers(-200 * 24, span_h // 2, n_customers), unit="h")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": signup,
            "country": rng.choice(["DE", "FR", "US"], n_customers),
            "language": rng.choice(["de", "fr", "en"], n_customers),
            "segment": rng.choice(
                np.array(["retail", "business", None], dtype=object), n_customers
            ),
            "loyalty_member": rng.random(n_customers) < 0.3,
            "marketing_consent": rng.random(n_customers) < 0.8,
            "age": rng.integers(18, 80, n_customers).astype("float64"),
            "tier": rng.choice(["gold", "silver"], n_customers),
        }
    ).astype(CUSTOMER_DTYPES | {"tier": "str"})
    types = np.array([*EVENT_TYPES, "app_install"])
    weights = np.array([30, 3, 20, 5, 2, 2, 2, 3, 6, 3, 10, 1, 1, 1, 1], dtype=float)
    n = n_customers * events_per_customer
    who = rng.integers(0, n_customers, n)
    hours = rng.integers(0, span_h, n)
    kind = rng.choice(types, n, p=weights / weights.sum())
    amount = np.where(
        kind == "purchase",
        rng.gamma(2.0, 25.0, n).round(2),
        np.where(kind == "refund", rng.gamma(2.0, 10.0, n).round(2), np.nan),
    )
    score = np.where(
        kind == "nps",
        rng.integers(0, 11, n),
        np.where(kind == "csat", rng.integers(1, 6, n), np.nan),
    ).astype("float64")
    offer = np.where(
        np.isin(kind, ["offer_sent", "offer_redeemed"]),
        rng.choice(np.array(["none", "discount_10", "free_shipping"], dtype=object), n),
        None,
    )
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "customer_id": np.array(ids, dtype=object)[who],
            "timestamp": t0 + pd.to_timedelta(hours, unit="h"),
            "event_type": kind,
            "amount": amount,
            "channel": rng.choice(["web", "app", "store"], n),
            "offer_id": offer,
            "propensity": np.where(kind == "offer_sent", 0.5, np.nan),
            "score": score,
        }
    ).astype(EVENT_DTYPES)
    events = events.sort_values("timestamp", kind="stable", ignore_index=True)
    return customers, events

"""churn_features v2 and the panel labels in idiomatic, vectorised pandas.

The benchmark's baseline and an independent second implementation: the tests and the benchmark
check that it gives the engine's rows (docs/feature-engine.md has the definitions). One
groupby pass per window and cutoff; no per-row Python.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.contract import EVENT_TYPES, NO_OFFER
from features.definitions import (
    CHURN_FEATURES_V2,
    COUNT_WINDOWS,
    COUNTED_TYPES,
    ONLINE_CHANNELS,
    PURCHASE_WINDOWS,
)

DAY = pd.Timedelta(days=1)
STATIC = ("country", "language", "segment", "loyalty_member", "marketing_consent")
CONTRACT_CUSTOMER_COLUMNS = ("customer_id", "signup_date", *STATIC)


def _days(later: pd.Series | pd.Timestamp, earlier: pd.Series) -> pd.Series:
    return (later - earlier) / DAY


def _by_customer(frame: pd.DataFrame) -> pd.core.groupby.DataFrameGroupBy:
    return frame.groupby("customer_id", sort=False, observed=True)


def features_at(
    events: pd.DataFrame, customers: pd.DataFrame, cutoff: pd.Timestamp
) -> pd.DataFrame:
    """Every customer's features at one cutoff, indexed by customer_id (customers' order)."""
    index = pd.Index(customers["customer_id"], name="customer_id")
    out = pd.DataFrame(index=index)
    past = events[events["timestamp"] < cutoff]
    kind = past["event_type"]

    # recency
    out["last_event_at"] = _by_customer(past)["timestamp"].max()
    purchases = past[kind == "purchase"]
    out["last_purchase_at"] = _by_customer(purchases)["timestamp"].max()
    real_offers = past[
        (kind == "offer_sent") & past["offer_id"].notna() & (past["offer_id"] != NO_OFFER)
    ]
    out["last_offer_at"] = _by_customer(real_offers)["timestamp"].max()
    out["last_cancellation_at"] = _by_customer(past[kind == "cancellation"])["timestamp"].max()
    signup = customers.set_index("customer_id")["signup_date"]

    f = pd.DataFrame(index=index)
    f["days_since_last_event"] = _days(cutoff, out["last_event_at"])
    f["days_since_last_purchase"] = _days(cutoff, out["last_purchase_at"])
    f["days_since_last_offer"] = _days(cutoff, out["last_offer_at"])
    f["days_since_last_cancellation"] = _days(cutoff, out["last_cancellation_at"])
    f["tenure_days"] = _days(cutoff, signup)

    # purchases per window
    counts, revenue = {}, {}
    for days in PURCHASE_WINDOWS:
        window = _by_customer(purchases[purchases["timestamp"] >= cutoff - days * DAY])["amount"]
        counts[days] = window.size().reindex(index, fill_value=0)
        revenue[days] = window.sum().reindex(index, fill_value=0.0)
    for days in PURCHASE_WINDOWS:
        f[f"n_purchase_{days}d"] = counts[days]
    for days in PURCHASE_WINDOWS:
        f[f"revenue_{days}d"] = revenue[days]
    for days in PURCHASE_WINDOWS:
        f[f"avg_purchase_{days}d"] = revenue[days] / counts[days].replace(0, np.nan)
    before = purchases[
        (purchases["timestamp"] < cutoff - 30 * DAY) & (purchases["timestamp"] >= cutoff - 60 * DAY)
    ]
    previous = _by_customer(before)["amount"]
    f["n_purchase_trend_30d"] = counts[30] - previous.size().reindex(index, fill_value=0)
    f["revenue_trend_30d"] = revenue[30] - previous.sum().reindex(index, fill_value=0.0)
    refunds = past[(kind == "refund") & (past["timestamp"] >= cutoff - 90 * DAY)]
    f["refund_amount_90d"] = _by_customer(refunds)["amount"].sum().reindex(index, fill_value=0.0)

    # event counts per type and window
    vocabulary = set(EVENT_TYPES)
    for days in COUNT_WINDOWS:
        recent = past[past["timestamp"] >= cutoff - days * DAY]
        table = pd.crosstab(recent["customer_id"], recent["event_type"])
        table = table.reindex(index, fill_value=0)
        f[f"n_events_{days}d"] = table.sum(axis=1)
        for name in COUNTED_TYPES:
            f[f"n_{name}_{days}d"] = table[name] if name in table else 0
        others = [c for c in table.columns if c not in vocabulary]
        f[f"n_other_{days}d"] = table[others].sum(axis=1) if others else 0

    # complaints: each resolution matched with the latest complaint at or before it
    n_complaints = _by_customer(past[kind == "complaint"]).size()
    n_resolved = _by_customer(past[kind == "complaint_resolved"]).size()
    unresolved = n_complaints.reindex(index, fill_value=0) - n_resolved.reindex(index, fill_value=0)
    f["unresolved_complaints"] = unresolved.clip(lower=0)
    service = events[events["event_type"].isin(["complaint", "complaint_resolved"])]
    service = service.sort_values(["customer_id", "timestamp", "event_type"], kind="stable")
    complained = service["timestamp"].where(service["event_type"] == "complaint")
    service = service.assign(last_complaint_at=complained.groupby(service["customer_id"]).ffill())
    resolved = service[
        (service["event_type"] == "complaint_resolved")
        & service["last_complaint_at"].notna()
        & (service["timestamp"] < cutoff)
    ]
    durations = _days(resolved["timestamp"], resolved["last_complaint_at"])
    f["avg_resolution_days"] = durations.groupby(resolved["customer_id"]).mean()
    # open case: no resolution after the latest complaint; it opened with the first complaint
    # after the resolution before it
    before_cutoff = service[service["timestamp"] < cutoff]
    is_complaint = before_cutoff["event_type"] == "complaint"
    last_complaint = _by_customer(before_cutoff[is_complaint])["timestamp"].max()
    last_resolved = _by_customer(before_cutoff[~is_complaint])["timestamp"].max()
    last_complaint, last_resolved = last_complaint.reindex(index), last_resolved.reindex(index)
    is_open = last_complaint.notna() & ~(last_resolved >= last_complaint)
    previous = before_cutoff.groupby("customer_id")["event_type"].shift()
    opens = before_cutoff[is_complaint & (previous.isna() | (previous == "complaint_resolved"))]
    opened_at = _by_customer(opens)["timestamp"].max().reindex(index)
    f["open_complaint"] = is_open.astype("float64")
    f["open_complaint_days"] = _days(cutoff, opened_at).where(is_open, 0.0)

    # surveys: the latest answer (ties: the higher one) and the mean
    for survey in ("nps", "csat"):
        answers = past[(kind == survey) & past["score"].notna()]
        ordered = answers.sort_values(["timestamp", "score"], kind="stable")
        f[f"last_{survey}"] = _by_customer(ordered)["score"].last()
        f[f"avg_{survey}"] = _by_customer(answers)["score"].mean()

    # offers
    for days in COUNT_WINDOWS:
        since = cutoff - days * DAY
        sent = real_offers[real_offers["timestamp"] >= since]
        redeemed = past[(kind == "offer_redeemed") & (past["timestamp"] >= since)]
        f[f"n_offer_sent_{days}d"] = _by_customer(sent).size().reindex(index, fill_value=0)
        f[f"n_offer_redeemed_{days}d"] = _by_customer(redeemed).size().reindex(index, fill_value=0)
    all_sent = _by_customer(real_offers).size().reindex(index, fill_value=0)
    redemptions = past[kind == "offer_redeemed"]
    all_redeemed = _by_customer(redemptions).size().reindex(index, fill_value=0)
    f["n_offer_sent_all"] = all_sent
    f["offer_redemption_rate"] = all_redeemed / all_sent.replace(0, np.nan)
    f["days_since_last_redemption"] = _days(
        cutoff, _by_customer(redemptions)["timestamp"].max().reindex(index)
    )
    year = purchases[purchases["timestamp"] >= cutoff - 365 * DAY]
    online = year[year["channel"].isin(ONLINE_CHANNELS)]
    n_online = _by_customer(online).size().reindex(index, fill_value=0)
    f["online_share_365d"] = n_online / counts[365].replace(0, np.nan)
    joined = _by_customer(past[kind == "loyalty_join"]).size().reindex(index, fill_value=0)
    f["has_loyalty_join"] = (joined > 0).astype("float64")

    # static attributes
    attributes = customers.set_index("customer_id")
    for column in ("country", "language", "segment"):
        f[column] = attributes[column] if column in attributes else np.nan
    for column in ("loyalty_member", "marketing_consent"):
        f[column] = attributes[column].astype("float64") if column in attributes else np.nan
    for column in attributes.columns:
        if column in CONTRACT_CUSTOMER_COLUMNS:
            continue
        values = attributes[column]
        numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
        f[column] = values.astype("float64") if numeric else values.astype("str")

    f = f.astype({x.name: x.dtype for x in CHURN_FEATURES_V2.features})
    return f.join(out[["last_purchase_at", "last_cancellation_at"]])


def labels_at(
    events: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, clv_days: int
) -> pd.DataFrame:
    """churned and clv per customer with any event in (T, T + max(H, D)]."""
    after = events[
        (events["timestamp"] > cutoff)
        & (events["timestamp"] <= cutoff + max(horizon_days, clv_days) * DAY)
    ]
    within = after["timestamp"] <= cutoff + horizon_days * DAY
    in_clv = after["timestamp"] <= cutoff + clv_days * DAY
    kind = after["event_type"]
    frame = pd.DataFrame(
        {
            "customer_id": after["customer_id"],
            "purchase": (kind == "purchase") & within,
            "cancellation": (kind == "cancellation") & within,
            "value": after["amount"].where((kind == "purchase") & in_clv, 0.0).fillna(0.0)
            - after["amount"].where((kind == "refund") & in_clv, 0.0).fillna(0.0),
        }
    )
    return _by_customer(frame)[["purchase", "cancellation", "value"]].sum()


def build_panel_pandas(
    events: pd.DataFrame,
    customers: pd.DataFrame,
    cutoffs: Iterable[pd.Timestamp],
    *,
    horizon_days: int = 90,
    clv_days: int = 365,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The panel of `features.panel.build_panel`, row for row."""
    end = pd.Timestamp(as_of) if as_of is not None else events["timestamp"].max()
    parts = []
    for cutoff in sorted(pd.Timestamp(c) for c in cutoffs):
        f = features_at(events, customers, cutoff)
        signup = customers.set_index("customer_id")["signup_date"]
        active = (
            (signup < cutoff)
            & (f["last_purchase_at"] >= cutoff - horizon_days * DAY)
            & (
                f["last_cancellation_at"].isna()
                | (f["last_cancellation_at"] < f["last_purchase_at"])
            )
        )
        f = f[active].drop(columns=["last_purchase_at", "last_cancellation_at"])
        labels = labels_at(events, cutoff, horizon_days, clv_days).reindex(f.index)
        f["churned"] = (labels["cancellation"].fillna(0) > 0) | (labels["purchase"].fillna(0) == 0)
        f[f"clv_{clv_days}"] = labels["value"].fillna(0.0).astype("float64")
        f.insert(0, "cutoff", cutoff)
        parts.append(f.reset_index())
    panel = pd.concat(parts, ignore_index=True)
    panel["customer_id"] = panel["customer_id"].astype("str")
    panel["cutoff"] = panel["cutoff"].astype("datetime64[us]")
    panel["label_complete"] = panel["cutoff"] + horizon_days * DAY <= end
    panel["clv_complete"] = panel["cutoff"] + clv_days * DAY <= end
    clv = f"clv_{clv_days}"
    panel[clv] = panel[clv].where(panel["clv_complete"])
    return panel

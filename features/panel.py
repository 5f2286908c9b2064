"""Training panels: point-in-time features plus churn and CLV labels, over a list of cutoffs.

Definitions (docs/feature-engine.md has the full text):

* **Active at T** (only active customers get a row): signed up before T, at least one purchase
  in [T - H, T), and no cancellation at or after that customer's last purchase before T.
  Equivalently: not already churned by the label's own rule looking backwards.
* **churned** (label): a `cancellation` in (T, T + H], or no `purchase` in (T, T + H].
* **clv_<D>** (target): purchase amounts minus refund amounts in (T, T + D], D = 365 by default.
  NaN where T + D is after the data end (`clv_complete` is False).

Events exactly at T belong to neither side: features use `timestamp < T`, labels `timestamp > T`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pandas as pd

from features.definitions import (
    CHURN_FEATURES,
    PURCHASE_EVENTS,
    PURCHASE_EVENTS_SQL,
    Aggregate,
    Feature,
    FeatureSet,
    Scan,
)
from features.engine import (
    Engine,
    Plan,
    TableLike,
    build_features,
    event_time_range,
    run_spec,
    to_frame,
)

_NEEDED = ("last_purchase_at", "last_cancellation_at")


def active_filter(horizon_days: int) -> str:
    """SQL: the customer is active at `cutoff` (see the module docstring)."""
    return (
        "signup_date < cutoff"
        f" AND last_purchase_at >= cutoff - INTERVAL {horizon_days} DAY"
        " AND (last_cancellation_at IS NULL OR last_cancellation_at < last_purchase_at)"
    )


def label_scan(horizon_days: int, clv_days: int) -> Scan:
    """The only scan that looks past the cutoff: (T, T + max(H, D)]."""
    within = f"timestamp <= cutoff + INTERVAL {horizon_days} DAY"
    return Scan(
        "future",
        (
            Aggregate(
                "n_purchase_next",
                f"count(*) FILTER (WHERE event_type = 'purchase' AND {within})",
            ),
            Aggregate(
                "n_cancellation_next",
                f"count(*) FILTER (WHERE event_type = 'cancellation' AND {within})",
            ),
            Aggregate(
                "revenue_next",
                f"sum(amount) FILTER (WHERE event_type = 'purchase' AND {_clv_window(clv_days)})",
            ),
            Aggregate(
                "refunds_next",
                f"sum(amount) FILTER (WHERE event_type = 'refund' AND {_clv_window(clv_days)})",
            ),
        ),
        window_days=max(horizon_days, clv_days),
        direction="future",
        source=PURCHASE_EVENTS,
    )


def _clv_window(clv_days: int) -> str:
    return f"timestamp <= cutoff + INTERVAL {clv_days} DAY"


def label_outputs(clv_days: int) -> tuple[Feature, ...]:
    return (
        Feature(
            "churned",
            "coalesce(n_cancellation_next, 0) > 0 OR coalesce(n_purchase_next, 0) = 0",
            "bool",
            "a cancellation, or no purchase, in (T, T + H]",
        ),
        Feature(
            f"clv_{clv_days}",
            "coalesce(revenue_next, 0.0) - coalesce(refunds_next, 0.0)",
            "float64",
            f"purchases minus refunds in (T, T + {clv_days}d]",
        ),
    )


def _timestamps(cutoffs: Iterable[pd.Timestamp | str]) -> list[pd.Timestamp]:
    stamps = sorted({pd.Timestamp(c).as_unit("us") for c in cutoffs})
    if not stamps:
        raise ValueError("no cutoffs given")
    if any(s.tz is not None for s in stamps):
        raise ValueError("cutoffs must be naive UTC timestamps, as event timestamps are")
    return stamps


def build_panel(
    events: TableLike,
    customers: TableLike,
    cutoffs: Iterable[pd.Timestamp | str],
    *,
    horizon_days: int = 90,
    clv_days: int = 365,
    as_of: pd.Timestamp | None = None,
    allow_incomplete: bool = False,
    engine: Engine | None = None,
    feature_set: FeatureSet = CHURN_FEATURES,
    plan: Plan | None = None,
) -> pd.DataFrame:
    """The training panel: one row per customer active at each cutoff, with features and labels.

    Args:
        events, customers: the contract tables (pandas/Arrow frames, Parquet paths, or Spark
            DataFrames with SparkEngine).
        cutoffs: the cutoff timestamps T (naive UTC).
        horizon_days: H of the churn label and of the "active" rule.
        clv_days: D of the CLV target `clv_<D>`.
        as_of: the data end, after which nothing is known (default: the last event's timestamp).
        allow_incomplete: keep cutoffs whose label window (T, T + H] ends after `as_of`; their
            rows get `label_complete=False` and a label computed on the partial window (use
            them for scoring, never for training). By default such cutoffs raise.
        engine, plan: as in `build_features`.

    Returns:
        `customer_id`, `cutoff`, the features (as `build_features`), `churned` (bool),
        `clv_<D>` (float64, NaN when incomplete), `label_complete` and `clv_complete` (bool);
        sorted by cutoff, then in the customers table's order.

    Raises:
        ValueError: a cutoff's label window is incomplete (and `allow_incomplete` is False).
    """
    if horizon_days <= 0 or clv_days <= 0:
        raise ValueError("horizon_days and clv_days must be positive")
    stamps = _timestamps(cutoffs)
    end = pd.Timestamp(as_of) if as_of is not None else event_time_range(events, engine=engine)[1]
    horizon = pd.Timedelta(days=horizon_days)
    incomplete = [t for t in stamps if t + horizon > end]
    if incomplete and not allow_incomplete:
        listed = ", ".join(str(t.date()) for t in incomplete)
        raise ValueError(
            f"label window (T, T + {horizon_days}d] of cutoff(s) {listed} ends after the data "
            f"end {end}; use earlier cutoffs (see monthly_cutoffs) or allow_incomplete=True"
        )
    aggregates = {a.name for s in feature_set.scans for a in s.aggregates}
    if missing := [n for n in _NEEDED if n not in aggregates]:
        raise ValueError(f"feature set {feature_set.id} lacks aggregates {missing}")

    base = feature_set.spec()
    if base.sources.get(PURCHASE_EVENTS, PURCHASE_EVENTS_SQL) != PURCHASE_EVENTS_SQL:
        raise ValueError(
            f"feature set {feature_set.id}: source {PURCHASE_EVENTS!r} is not the standard one"
        )
    spec = replace(
        base,
        sources={**base.sources, PURCHASE_EVENTS: PURCHASE_EVENTS_SQL},
        scans=(*_bounded_for_active(base.scans, horizon_days), label_scan(horizon_days, clv_days)),
        outputs=base.outputs + label_outputs(clv_days),
        row_filter=active_filter(horizon_days),
    )
    panel = to_frame(run_spec(spec, events, customers, cutoffs=stamps, engine=engine, plan=plan))
    # label columns last, after any extra static attributes
    label_names = [f.name for f in label_outputs(clv_days)]
    panel = panel[[c for c in panel.columns if c not in label_names] + label_names]
    panel["label_complete"] = (panel["cutoff"] + horizon) <= end
    panel["clv_complete"] = (panel["cutoff"] + pd.Timedelta(days=clv_days)) <= end
    clv = f"clv_{clv_days}"
    panel[clv] = panel[clv].where(panel["clv_complete"])
    return panel


_RECENT_WHEN_ACTIVE = {"last_event_at", "last_purchase_at"}


def _bounded_for_active(scans: tuple[Scan, ...], horizon_days: int) -> tuple[Scan, ...]:
    """Read the last H days instead of all history where that cannot change a panel row.

    An active customer bought in [T - H, T), so their latest event and latest purchase lie in
    that window; a scan holding only those two aggregates gives the same values for every row
    the panel keeps, from far fewer rows (the all-history scan is the most expensive one).
    """
    return tuple(
        replace(scan, window_days=horizon_days)
        if scan.direction == "past"
        and scan.window_days is None
        and {a.name for a in scan.aggregates} <= _RECENT_WHEN_ACTIVE
        else scan
        for scan in scans
    )


def monthly_cutoffs(
    events: TableLike,
    n: int,
    horizon_days: int = 90,
    *,
    as_of: pd.Timestamp | None = None,
    engine: Engine | None = None,
) -> list[pd.Timestamp]:
    """The latest `n` month starts T whose label window (T, T + H] is complete.

    Only month starts after the first event are candidates (a cutoff needs some history), so
    short data may give fewer than `n`, oldest first.

    Raises:
        ValueError: no month start qualifies.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    first, last = event_time_range(events, engine=engine)
    end = pd.Timestamp(as_of) if as_of is not None else last
    latest = (end - pd.Timedelta(days=horizon_days)).to_period("M").to_timestamp()
    months = pd.date_range(end=latest, periods=n, freq="MS")
    chosen = [pd.Timestamp(m).as_unit("us") for m in months if m > first]
    if not chosen:
        raise ValueError(f"no month start between {first} and {end} - {horizon_days}d")
    return chosen


def online_features(
    events: TableLike,
    customer: pd.DataFrame | pd.Series,
    as_of: pd.Timestamp,
    *,
    engine: Engine | None = None,
    feature_set: FeatureSet = CHURN_FEATURES,
) -> pd.DataFrame:
    """Features of one customer at `as_of`: exactly the offline row for (customer, as_of).

    Args:
        events: that customer's events (others are ignored).
        customer: the customer's row of the customers table (a one-row frame keeps the dtypes).
        as_of: the scoring time; events at or after it are ignored.
    """
    row = customer.to_frame().T.infer_objects() if isinstance(customer, pd.Series) else customer
    if len(row) != 1:
        raise ValueError(f"expected one customer row, got {len(row)}")
    entities = pd.DataFrame({"customer_id": row["customer_id"].to_numpy(), "cutoff": [as_of]})
    return build_features(events, row, entities, engine=engine, feature_set=feature_set)


def split_columns(panel: pd.DataFrame, clv_days: int = 365) -> tuple[list[str], list[str]]:
    """(feature columns, label columns) of a panel."""
    labels = ["churned", f"clv_{clv_days}", "label_complete", "clv_complete"]
    features = [c for c in panel.columns if c not in ("customer_id", "cutoff", *labels)]
    return features, labels

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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
    arrow_schema,
    build_features,
    event_time_range,
    frame_from_parts,
    output_dtypes,
    stream_spec,
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
    streamed = list(
        iter_panel(
            events,
            customers,
            cutoffs,
            horizon_days=horizon_days,
            clv_days=clv_days,
            as_of=as_of,
            allow_incomplete=allow_incomplete,
            engine=engine,
            feature_set=feature_set,
            plan=plan,
        )
    )
    dtypes, tables = streamed[-1][0], [table for _, table in streamed]
    del streamed  # the conversion frees each part as it goes: hold them in one list only
    return frame_from_parts(tables, dtypes)


@dataclass(frozen=True)
class PanelWritten:
    """What `write_panel` wrote."""

    path: Path
    rows: int
    columns: int
    cutoffs: int
    churned: int  # rows labelled churned


def write_panel(
    events: TableLike,
    customers: TableLike,
    cutoffs: Iterable[pd.Timestamp | str],
    path: str | Path,
    *,
    on_cutoff: Callable[[pd.Timestamp], None] | None = None,
    **options: Any,
) -> PanelWritten:
    """`build_panel` straight into a Parquet file, one cutoff at a time: the panel is never
    held in memory whole (at 1M customers it is larger than everything else the build holds).

    `pd.read_parquet(path)` gives the frame `build_panel` returns. The file appears only when
    complete (written beside it, then renamed). `on_cutoff(T)` is called as each cutoff is done
    (with SparkEngine's join plan, once at the end); `options` are `build_panel`'s.
    """
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    rows = churned = 0
    seen: set[pd.Timestamp] = set()
    writer = None
    try:
        for dtypes, table in iter_panel(events, customers, cutoffs, **options):
            if writer is None:
                writer = pq.ParquetWriter(partial, arrow_schema(dtypes))
            writer.write_table(table)
            rows += table.num_rows
            churned += pc.sum(table.column("churned")).as_py() or 0
            done = {pd.Timestamp(t) for t in pc.unique(table.column("cutoff")).to_pylist()}
            if on_cutoff is not None:
                for stamp in sorted(done - seen):
                    on_cutoff(stamp)
            seen |= done
            del table  # before the next cutoff runs
        assert writer is not None  # iter_panel yields at least one part
        writer.close()
        writer = None
        partial.replace(target)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    return PanelWritten(target, rows, len(dtypes), len(seen), churned)


def iter_panel(
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
) -> Iterator[tuple[dict[str, str], pa.Table]]:
    """The panel in parts, each (the panel's pandas dtypes, the part's rows in that schema):
    one part per cutoff in the by_cutoff plan, in `build_panel`'s row order."""
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
    for result_spec, part in stream_spec(
        spec, events, customers, cutoffs=stamps, engine=engine, plan=plan
    ):
        dtypes = _panel_dtypes(output_dtypes(result_spec), clv_days)
        finished = _with_label_flags(part, dtypes, end, horizon_days, clv_days)
        del part
        yield dtypes, finished
        del finished  # hold no finished part while the next cutoff runs (a writer freed it)


def _panel_dtypes(outputs: dict[str, str], clv_days: int) -> dict[str, str]:
    """Keys and features, then the labels (after any extra static attributes), then flags."""
    labels = [f.name for f in label_outputs(clv_days)]
    dtypes = {n: t for n, t in outputs.items() if n not in labels}
    dtypes |= {n: outputs[n] for n in labels}
    return dtypes | {"label_complete": "bool", "clv_complete": "bool"}


def _with_label_flags(
    part: pa.Table, dtypes: dict[str, str], end: pd.Timestamp, horizon_days: int, clv_days: int
) -> pa.Table:
    """The part with `label_complete`, `clv_complete`, and the CLV hidden where incomplete."""
    cutoff = part.column("cutoff").cast(pa.timestamp("us"))
    last = pa.scalar(end.as_unit("us").to_datetime64(), pa.timestamp("us"))

    def ends_by_data_end(days: int) -> pa.ChunkedArray:
        return pc.less_equal(
            pc.add(cutoff, pa.scalar(pd.Timedelta(days=days), pa.duration("us"))), last
        )

    clv = f"clv_{clv_days}"
    columns = {name: part.column(name) for name in dtypes if name in part.column_names}
    columns["label_complete"] = ends_by_data_end(horizon_days)
    columns["clv_complete"] = ends_by_data_end(clv_days)
    columns[clv] = pc.if_else(columns["clv_complete"], columns[clv], None)
    schema = arrow_schema(dtypes)
    return pa.table([columns[n] for n in dtypes], names=list(dtypes)).cast(schema)


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

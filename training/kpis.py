"""Business KPIs from the contract's customers and events frames, by month, segment and cohort.

Definitions (H = the churn horizon, 90 days by default; a month M is its first day, 00:00 UTC):

- **active at M** (the same rule as `features.panel.active_filter`, so the KPI population is the
  training panel's): signed up before M, at least one `purchase` in [M - H, M), and no
  `cancellation` at or after the last purchase before M. That is "not already churned" by the
  label's own rule looking backwards.
- **churn rate at M**: of the customers active at M, the share that churn by the label's rule: a
  `cancellation` in (M, M + H] or no `purchase` in (M, M + H]. **Retention rate** = 1 - churn rate.
  Reported only for months whose window (M, M + H] ends on or before the last event in the data.
- **NPS** of month M: over `nps` answers dated in the month, % promoters (9-10) - % detractors
  (0-6), from -100 to 100.
- **CSAT** of month M: mean `csat` score (1-5) and share of answers of 4 or 5.
- **CLTV (12 months)** at M: net revenue (purchases - refunds) in the 365 days before M, averaged
  over the customers active at M. A trailing measure, so it exists for every month.
- **revenue** of month M: net revenue dated in the month.

Each is given for all customers (dimension "all"), per `segment` (when the customers frame has one)
and per signup cohort (dimension "cohort", the signup month "YYYY-MM").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

KPI_COLUMNS = ["period", "dimension", "group", "metric", "value", "n"]
METRICS = (
    "active_customers",
    "churn_rate",
    "retention_rate",
    "nps",
    "csat_mean",
    "csat_satisfied_share",
    "cltv_12m",
    "revenue",
)


def _naive(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values)
    if parsed.dt.tz is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def _groups(customers: pd.DataFrame) -> pd.DataFrame:
    """customer_id -> group label per dimension (all, segment, cohort)."""
    out = pd.DataFrame({"customer_id": customers["customer_id"].astype(str)})
    out["all"] = "all"
    if "segment" in customers.columns:
        out["segment"] = customers["segment"].astype("string").fillna("(missing)").to_numpy()
    out["cohort"] = _naive(customers["signup_date"]).dt.strftime("%Y-%m").to_numpy()
    return out


def _asof(
    grid: pd.DataFrame, times: pd.DataFrame, *, on: str, direction: str, name: str
) -> pd.Series:
    """For each grid row, the nearest event time strictly before / after its month, per customer."""
    right = times.rename(columns={"timestamp": name})[["customer_id", name]].sort_values(name)
    merged = pd.merge_asof(
        grid[["customer_id", on]].reset_index().sort_values(on),
        right,
        left_on=on,
        right_on=name,
        by="customer_id",
        direction=direction,  # type: ignore[arg-type]
        allow_exact_matches=False,
    )
    return merged.set_index("index")[name].reindex(grid.index)


def _trailing_sum(grid: pd.DataFrame, money: pd.DataFrame, *, days: int) -> pd.Series:
    """Net amount per customer in [M - days, M), from cumulative sums and two as-of lookups."""
    money = money.sort_values("timestamp").copy()
    money["cum"] = money.groupby("customer_id")["signed"].cumsum()
    right = money[["customer_id", "timestamp", "cum"]]
    left = grid[["customer_id", "month"]].reset_index()
    left["start"] = left["month"] - pd.Timedelta(days=days)

    def cum_before(column: str) -> pd.Series:
        merged = pd.merge_asof(
            left.sort_values(column),
            right,
            left_on=column,
            right_on="timestamp",
            by="customer_id",
            direction="backward",
            allow_exact_matches=False,
        )
        return merged.set_index("index")["cum"].reindex(grid.index).fillna(0.0)

    return cum_before("month") - cum_before("start")


def _tidy(frame: pd.DataFrame, dimension: str, metrics: dict[str, str], n: str) -> pd.DataFrame:
    parts = []
    for metric, column in metrics.items():
        part = frame[["period", dimension, column, n]].rename(
            columns={dimension: "group", column: "value", n: "n"}
        )
        part.insert(1, "dimension", dimension)
        part.insert(3, "metric", metric)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def kpis(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    *,
    horizon_days: int = 90,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Monthly business KPIs, tidy: one row per (period, dimension, group, metric).

    Args:
        customers: Contract customers frame (`customer_id`, `signup_date`, optional `segment`).
        events: Contract events frame (`customer_id`, `timestamp`, `event_type`, `amount`,
            `score`).
        horizon_days: H of the churn definition (see the module docstring).
        start: First month (default: month of the first event).
        end: Last month (default: month of the last event).

    Returns:
        Columns `period` (month start), `dimension` ("all", "segment", "cohort"), `group`,
        `metric` (one of `METRICS`), `value`, `n` (customers or survey answers behind the value).
    """
    events = events.assign(
        customer_id=events["customer_id"].astype(str), timestamp=_naive(events["timestamp"])
    )
    customers = customers.assign(
        customer_id=customers["customer_id"].astype(str),
        signup_date=_naive(customers["signup_date"]),
    )
    if events.empty:
        return pd.DataFrame(columns=KPI_COLUMNS)
    first = pd.Timestamp(start) if start is not None else events["timestamp"].min()
    last = pd.Timestamp(end) if end is not None else events["timestamp"].max()
    data_end = events["timestamp"].max()
    months = pd.date_range(first.to_period("M").to_timestamp(), last, freq="MS")
    groups = _groups(customers)
    dimensions = [d for d in ("all", "segment", "cohort") if d in groups.columns]
    horizon = pd.Timedelta(days=horizon_days)
    kind = events["event_type"].astype(str)

    # Customer-month grid of everyone signed up before the month.
    grid = customers[["customer_id", "signup_date"]].merge(
        pd.DataFrame({"month": months.astype("datetime64[ns]")}), how="cross"
    )
    grid = grid[grid["signup_date"] < grid["month"]].reset_index(drop=True)
    purchases = events.loc[kind == "purchase", ["customer_id", "timestamp"]]
    cancels = events.loc[kind == "cancellation", ["customer_id", "timestamp"]]
    last_purchase = _asof(grid, purchases, on="month", direction="backward", name="t")
    next_purchase = _asof(grid, purchases, on="month", direction="forward", name="t")
    last_cancel = _asof(grid, cancels, on="month", direction="backward", name="t")
    next_cancel = _asof(grid, cancels, on="month", direction="forward", name="t")
    cancelled = last_cancel.notna() & (last_cancel >= last_purchase)
    grid["active"] = last_purchase.notna() & (last_purchase >= grid["month"] - horizon) & ~cancelled
    window_end = grid["month"] + horizon
    grid["churned"] = (
        next_purchase.isna()
        | (next_purchase > window_end)
        | (next_cancel.notna() & (next_cancel <= window_end))
    )
    grid["complete"] = window_end <= data_end
    money = events.loc[kind.isin(["purchase", "refund"]), ["customer_id", "timestamp"]].copy()
    amount = pd.to_numeric(events.loc[money.index, "amount"], errors="coerce").fillna(0.0)
    money["signed"] = np.where(kind.loc[money.index] == "refund", -amount, amount)
    grid["revenue_12m"] = _trailing_sum(grid, money, days=365)
    grid = grid.merge(groups, on="customer_id", how="left")
    active = grid[grid["active"]].rename(columns={"month": "period"})

    money = money.merge(groups, on="customer_id", how="left")
    money["period"] = money["timestamp"].dt.to_period("M").dt.to_timestamp()
    surveys = events.loc[kind.isin(["nps", "csat"]), ["customer_id", "timestamp", "event_type"]]
    surveys = surveys.assign(
        score=pd.to_numeric(events.loc[surveys.index, "score"], errors="coerce"),
        period=surveys["timestamp"].dt.to_period("M").dt.to_timestamp(),
    ).merge(groups, on="customer_id", how="left")
    surveys = surveys[surveys["score"].notna()]
    nps = surveys[surveys["event_type"] == "nps"].assign(
        promoter=lambda f: (f["score"] >= 9).astype(float),
        detractor=lambda f: (f["score"] <= 6).astype(float),
    )
    csat = surveys[surveys["event_type"] == "csat"].assign(
        satisfied=lambda f: (f["score"] >= 4).astype(float)
    )

    parts = []
    for dim in dimensions:
        base = active.groupby(["period", dim], observed=True).agg(
            active_customers=("customer_id", "size"), cltv_12m=("revenue_12m", "mean")
        )
        base["n_active"] = base["active_customers"]
        done = active[active["complete"]].groupby(["period", dim], observed=True)
        labelled = done.agg(churn_rate=("churned", "mean"), n_labelled=("churned", "size"))
        labelled["retention_rate"] = 1.0 - labelled["churn_rate"]
        base = base.reset_index()
        parts.append(
            _tidy(
                base,
                dim,
                {"active_customers": "active_customers", "cltv_12m": "cltv_12m"},
                "n_active",
            )
        )
        parts.append(
            _tidy(
                labelled.reset_index(),
                dim,
                {"churn_rate": "churn_rate", "retention_rate": "retention_rate"},
                "n_labelled",
            )
        )
        if len(nps):
            score = nps.groupby(["period", dim], observed=True).agg(
                promoters=("promoter", "mean"),
                detractors=("detractor", "mean"),
                n=("score", "size"),
            )
            score["nps"] = 100.0 * (score["promoters"] - score["detractors"])
            parts.append(_tidy(score.reset_index(), dim, {"nps": "nps"}, "n"))
        if len(csat):
            sat = csat.groupby(["period", dim], observed=True).agg(
                csat_mean=("score", "mean"),
                csat_satisfied_share=("satisfied", "mean"),
                n=("score", "size"),
            )
            metrics = {"csat_mean": "csat_mean", "csat_satisfied_share": "csat_satisfied_share"}
            parts.append(_tidy(sat.reset_index(), dim, metrics, "n"))
        if len(money):
            revenue = money.groupby(["period", dim], observed=True).agg(
                revenue=("signed", "sum"), n=("customer_id", "nunique")
            )
            parts.append(_tidy(revenue.reset_index(), dim, {"revenue": "revenue"}, "n"))
    table = pd.concat(parts, ignore_index=True)
    table = table[(table["period"] >= months.min()) & (table["period"] <= months.max())]
    table["group"] = table["group"].astype(str)
    table["value"] = table["value"].astype(float)
    table["n"] = table["n"].astype(int)
    order = {m: i for i, m in enumerate(METRICS)}
    table = table.sort_values(
        ["dimension", "group", "metric", "period"],
        key=lambda s: s.map(order) if s.name == "metric" else s,
    )
    return table[KPI_COLUMNS].reset_index(drop=True)


def plot_kpis(
    table: pd.DataFrame,
    *,
    dimension: str = "all",
    metrics: Sequence[str] = ("retention_rate", "nps", "csat_mean", "cltv_12m"),
) -> Figure:
    """Small multiples of KPIs over time, one line per group of `dimension`.

    Args:
        table: From `kpis`.
        dimension: "all", "segment" or "cohort".
        metrics: Which metrics to draw, one panel each.

    Returns:
        The figure.
    """
    shown = table[table["dimension"] == dimension]
    columns = 2
    rows = max(1, (len(metrics) + 1) // columns)
    fig = Figure(figsize=(10, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        data = shown[shown["metric"] == metric]
        for group, series in data.groupby("group"):
            ax.plot(series["period"], series["value"], marker=".", label=str(group))
        ax.set_title(metric.replace("_", " "))
        ax.tick_params(axis="x", labelrotation=30)
        if data["group"].nunique() > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(f"KPIs by month ({dimension})")
    return fig

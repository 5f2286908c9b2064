"""Each feature of churn_features v2 against hand-computed values, and the engine's contract."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.definitions import (
    CHURN_FEATURES_V2,
    Aggregate,
    Feature,
    FeatureSet,
    QuerySpec,
    Scan,
)
from features.engine import (
    DuckDBEngine,
    Plan,
    build_features,
    compile_partials,
    merge_scans,
    shared_sources,
    source_window,
    sql_timestamp,
)
from tests.factories import (
    DAY,
    T0,
    customer,
    customers_frame,
    entities_frame,
    event,
    events_frame,
    random_world,
)

US = pd.Timedelta(microseconds=1)


def features_of(*events: dict[str, Any], cutoff: pd.Timestamp = T0, **who: Any) -> pd.Series:
    """The feature row of customer C1 at `cutoff`, given C1's events."""
    frame = build_features(
        events_frame(*events), customers_frame(customer(**who)), entities_frame(("C1", cutoff))
    )
    assert len(frame) == 1
    return frame.iloc[0]


def purchase(at: pd.Timestamp, amount: float) -> dict[str, Any]:
    return event("C1", at, "purchase", amount=amount)


PURCHASES = [
    purchase(T0 - 1 * DAY, 10.0),
    purchase(T0 - 10 * DAY, 20.0),
    purchase(T0 - 40 * DAY, 15.0),
    purchase(T0 - 100 * DAY, 40.0),
    purchase(T0 - 400 * DAY, 50.0),
    purchase(T0, 99.0),  # at the cutoff: not before it
    purchase(T0 + DAY, 77.0),  # the future
]


@pytest.fixture(scope="module")
def purchases_row() -> pd.Series:
    return features_of(*PURCHASES)


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("n_purchase_7d", 1),
        ("n_purchase_30d", 2),
        ("n_purchase_90d", 3),
        ("n_purchase_365d", 4),
        ("revenue_7d", 10.0),
        ("revenue_30d", 30.0),
        ("revenue_90d", 45.0),
        ("revenue_365d", 85.0),
        ("avg_purchase_7d", 10.0),
        ("avg_purchase_30d", 15.0),
        ("avg_purchase_90d", 15.0),
        ("avg_purchase_365d", 21.25),
        ("n_purchase_trend_30d", 1),  # 2 in the last 30 days, 1 in the 30 before
        ("revenue_trend_30d", 15.0),  # 30 - 15
        ("days_since_last_purchase", 1.0),
        ("days_since_last_event", 1.0),
        ("n_events_30d", 2),
        ("n_events_90d", 3),
    ],
)
def test_build_features_computes_purchase_windows(
    purchases_row: pd.Series, feature: str, expected: float
) -> None:
    assert purchases_row[feature] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("offset", "in_30d"),
    [
        (30 * DAY, True),  # the window is [T - 30d, T)
        (30 * DAY + US, False),
        (US, True),
        (pd.Timedelta(0), False),  # an event at the cutoff is not before it
    ],
)
def test_build_features_bounds_windows_exactly(offset: pd.Timedelta, in_30d: bool) -> None:
    row = features_of(event("C1", T0 - offset, "visit"))
    assert row["n_visit_30d"] == int(in_30d)


def test_build_features_leaves_missing_data_missing() -> None:
    row = features_of()  # a customer without any event
    counts = [c for c in CHURN_FEATURES_V2.columns if c.startswith("n_")]
    assert (row[counts] == 0).all()
    assert row["revenue_30d"] == 0.0
    assert row["unresolved_complaints"] == 0
    missing = [
        "days_since_last_event",
        "days_since_last_purchase",
        "days_since_last_offer",
        "days_since_last_cancellation",
        "avg_purchase_30d",
        "avg_resolution_days",
        "last_nps",
        "avg_nps",
        "last_csat",
        "avg_csat",
        "offer_redemption_rate",
        "days_since_last_redemption",
        "online_share_365d",
    ]
    assert row[missing].isna().all()


def test_build_features_takes_latest_survey_answers() -> None:
    row = features_of(
        event("C1", T0 - 5 * DAY, "nps", score=9.0),
        event("C1", T0 - 2 * DAY, "nps", score=3.0),
        event("C1", T0 - 2 * DAY, "nps", score=7.0),  # same instant: the higher answer wins
        event("C1", T0 + DAY, "nps", score=0.0),
        event("C1", T0 - 20 * DAY, "csat", score=2.0),
        event("C1", T0 - 40 * DAY, "csat", score=5.0),
    )
    assert row["last_nps"] == 7.0
    assert row["avg_nps"] == pytest.approx((9 + 3 + 7) / 3)
    assert row["last_csat"] == 2.0
    assert row["avg_csat"] == pytest.approx(3.5)
    assert row["n_nps_30d"] == 3
    assert row["n_csat_30d"] == 1
    assert row["n_csat_90d"] == 2


def test_build_features_matches_complaints_with_resolutions() -> None:
    row = features_of(
        event("C1", T0 - 50 * DAY, "complaint_resolved"),  # nothing to resolve: no duration
        event("C1", T0 - 20 * DAY, "complaint"),
        event("C1", T0 - 10 * DAY, "complaint"),
        event("C1", T0 - 8 * DAY, "complaint_resolved"),  # latest complaint: T-10d -> 2 days
        event("C1", T0 - 3 * DAY, "complaint"),
        event("C1", T0 - 2 * DAY, "complaint_resolved"),  # T-3d -> 1 day
        event("C1", T0 + DAY, "complaint_resolved"),  # the future
    )
    assert row["avg_resolution_days"] == pytest.approx(1.5)
    assert row["unresolved_complaints"] == 0  # 3 complaints - 3 resolutions
    assert row["n_complaint_30d"] == 3
    assert row["n_complaint_90d"] == 3
    assert row["n_complaint_resolved_30d"] == 2


def test_build_features_floors_unresolved_complaints_at_zero() -> None:
    row = features_of(
        event("C1", T0 - 9 * DAY, "complaint"),
        event("C1", T0 - 5 * DAY, "complaint"),
        event("C1", T0 - 4 * DAY, "complaint_resolved"),
    )
    assert row["unresolved_complaints"] == 1
    row = features_of(event("C1", T0 - 4 * DAY, "complaint_resolved"))
    assert row["unresolved_complaints"] == 0
    assert math.isnan(row["avg_resolution_days"])


@pytest.mark.parametrize(
    ("history", "is_open", "open_days"),
    [
        ([], 0.0, 0.0),
        ([(20, "complaint")], 1.0, 20.0),
        ([(20, "complaint"), (10, "complaint_resolved")], 0.0, 0.0),
        # a chaser while the case is open: one resolution closes both (complaints minus
        # resolutions would still count one)
        ([(20, "complaint"), (12, "complaint"), (10, "complaint_resolved")], 0.0, 0.0),
        # the case opened with the first complaint, not the chaser
        ([(20, "complaint"), (12, "complaint")], 1.0, 20.0),
        # a new case after a resolution: its age counts from its own first complaint
        ([(40, "complaint"), (30, "complaint_resolved"), (5, "complaint")], 1.0, 5.0),
        ([(5, "complaint"), (5, "complaint_resolved")], 0.0, 0.0),  # same instant: resolved
        ([(5, "complaint"), (-1, "complaint_resolved")], 1.0, 5.0),  # resolved only later
    ],
)
def test_build_features_flags_open_complaint_cases(
    history: list[tuple[int, str]], is_open: float, open_days: float
) -> None:
    row = features_of(*(event("C1", T0 - days * DAY, kind) for days, kind in history))
    assert row["open_complaint"] == is_open
    assert row["open_complaint_days"] == pytest.approx(open_days)


def test_build_features_measures_response_to_offers() -> None:
    row = features_of(
        event("C1", T0 - 400 * DAY, "offer_sent", offer_id="gift"),
        event("C1", T0 - 200 * DAY, "offer_sent", offer_id="discount_10"),
        event("C1", T0 - 190 * DAY, "offer_redeemed", offer_id="discount_10"),
        event("C1", T0 - 20 * DAY, "offer_sent", offer_id="discount_10"),
        event("C1", T0 - 10 * DAY, "offer_sent", offer_id="none"),  # a control: not an offer
        event("C1", T0 + DAY, "offer_redeemed", offer_id="discount_10"),  # the future
    )
    assert row["n_offer_sent_all"] == 3
    assert row["offer_redemption_rate"] == pytest.approx(1 / 3)
    assert row["days_since_last_redemption"] == pytest.approx(190.0)
    never = features_of(event("C1", T0 - DAY, "visit"))
    assert never["n_offer_sent_all"] == 0
    assert math.isnan(never["offer_redemption_rate"])
    assert math.isnan(never["days_since_last_redemption"])


def test_build_features_computes_online_share() -> None:
    row = features_of(
        event("C1", T0 - 30 * DAY, "purchase", amount=5.0, channel="web"),
        event("C1", T0 - 60 * DAY, "purchase", amount=5.0, channel="app"),
        event("C1", T0 - 90 * DAY, "purchase", amount=5.0, channel="store"),
        event("C1", T0 - 120 * DAY, "purchase", amount=5.0, channel=None),
        event("C1", T0 - 500 * DAY, "purchase", amount=5.0, channel="store"),  # over a year ago
        event("C1", T0 - 2 * DAY, "visit", channel="store"),  # not a purchase
        signup_date=T0 - 730 * DAY,
    )
    assert row["online_share_365d"] == pytest.approx(2 / 4)
    assert math.isnan(features_of(signup_date=T0 - 100 * DAY)["online_share_365d"])


def test_build_features_excludes_control_offers() -> None:
    row = features_of(
        event("C1", T0 - 1 * DAY, "offer_sent", offer_id="none"),
        event("C1", T0 - 20 * DAY, "offer_sent", offer_id="discount_10"),
        event("C1", T0 - 60 * DAY, "offer_sent", offer_id="free_shipping"),
        event("C1", T0 - 5 * DAY, "offer_redeemed", offer_id="discount_10"),
    )
    assert row["n_offer_sent_30d"] == 1
    assert row["n_offer_sent_90d"] == 2
    assert row["n_offer_redeemed_30d"] == 1
    assert row["days_since_last_offer"] == pytest.approx(20.0)
    assert row["days_since_last_event"] == pytest.approx(1.0)  # the control is still an event


def test_build_features_counts_types_outside_the_vocabulary() -> None:
    row = features_of(
        event("C1", T0 - 2 * DAY, "app_install"),
        event("C1", T0 - 45 * DAY, "app_install"),
        event("C1", T0 - 3 * DAY, "refund", amount=12.5),
    )
    assert (row["n_other_30d"], row["n_other_90d"]) == (1, 2)
    assert row["n_refund_30d"] == 1
    assert row["refund_amount_90d"] == 12.5
    assert row["n_events_90d"] == 3


def test_build_features_reads_history_and_customer_attributes() -> None:
    row = features_of(
        event("C1", T0 - 200 * DAY, "cancellation"),
        event("C1", T0 - 300 * DAY, "loyalty_join"),
        signup_date=T0 - 365.5 * DAY,
        country="FR",
        segment=None,
        loyalty_member=True,
        age=41,
        tier="gold",
    )
    assert row["days_since_last_cancellation"] == pytest.approx(200.0)
    assert row["tenure_days"] == pytest.approx(365.5)
    assert row["has_loyalty_join"] == 1.0
    assert row["country"] == "FR"
    assert pd.isna(row["segment"])
    assert row["loyalty_member"] == 1.0
    assert row["age"] == 41.0
    assert row["tier"] == "gold"


def test_build_features_gives_stable_columns_and_dtypes() -> None:
    customers = customers_frame(customer("C1", age=41, tier="gold", vip=True))
    frame = build_features(
        events_frame(event("C1", T0 - DAY, "visit")), customers, entities_frame(("C1", T0))
    )
    assert list(frame.columns) == [
        "customer_id",
        "cutoff",
        *CHURN_FEATURES_V2.columns,
        "age",
        "tier",
        "vip",
    ]
    expected = {f.name: f.dtype for f in CHURN_FEATURES_V2.features} | {
        "age": "float64",
        "tier": "str",
        "vip": "float64",
    }
    for column, dtype in expected.items():
        assert frame[column].dtype == dtype, column
    assert frame["cutoff"].dtype == "datetime64[us]"
    assert frame["customer_id"].dtype == "str"
    assert CHURN_FEATURES_V2.categorical == ["country", "language", "segment"]
    assert CHURN_FEATURES_V2.id == "churn_features:2"


def test_build_features_keeps_entity_order_and_duplicates() -> None:
    customers = customers_frame(customer("C1"), customer("C2"))
    events = events_frame(
        event("C1", T0 - DAY, "visit"),
        event("C2", T0 - 40 * DAY, "visit"),
        event("C2", T0 - 2 * DAY, "visit"),
    )
    later = T0 + 10 * DAY
    entities = entities_frame(("C2", T0), ("C1", later), ("C2", T0), ("C9", T0))
    frame = build_features(events, customers, entities)
    assert frame["customer_id"].tolist() == ["C2", "C1", "C2", "C9"]
    assert frame["cutoff"].tolist() == [T0, later, T0, T0]
    assert frame["days_since_last_event"].tolist()[:3] == pytest.approx([2.0, 11.0, 2.0])
    unknown = frame.iloc[3]  # not in customers and no events: no invented values
    assert unknown["n_events_90d"] == 0
    assert pd.isna(unknown["tenure_days"])
    assert pd.isna(unknown["country"])


@pytest.mark.parametrize(
    "engine",
    [
        DuckDBEngine(plan="by_cutoff"),
        DuckDBEngine(plan="by_cutoff", prefilter_max_customers=0, threads=1),
        DuckDBEngine(plan="by_cutoff", prefilter_max_customers=0, max_customers_per_query=7),
    ],
    ids=["by_cutoff", "by_cutoff_no_prefilter_one_thread", "by_cutoff_in_customer_buckets"],
)
def test_build_features_gives_the_same_rows_on_every_plan(engine: DuckDBEngine) -> None:
    customers, events = random_world(3)
    rng = np.random.default_rng(3)
    # monthly cutoffs for everyone, plus some customers at their own odd cutoffs
    monthly = pd.date_range("2024-09-01", periods=4, freq="MS")
    pairs = [(c, t) for t in monthly for c in customers["customer_id"]]
    odd = pd.Timestamp("2024-06-01") + pd.to_timedelta(rng.integers(0, 500 * 24, 6), unit="h")
    pairs += list(zip(rng.choice(customers["customer_id"], 6), odd, strict=True))
    entities = entities_frame(*pairs)
    reference = build_features(events, customers, entities, plan="join")
    result = build_features(events, customers, entities, engine=engine)
    pd.testing.assert_frame_equal(result, reference, check_exact=False, rtol=1e-12)
    assert reference["n_events_90d"].sum() > 0  # the world is not empty


def test_build_features_reads_parquet_files(tmp_path: Path) -> None:
    customers, events = random_world(4, n_customers=10)
    events.to_parquet(tmp_path / "events.parquet")
    customers.to_parquet(tmp_path / "customers.parquet")
    entities = entities_frame(*[(c, T0) for c in customers["customer_id"]])
    paths = (tmp_path / "events.parquet", str(tmp_path / "customers.parquet"))
    from_files = build_features(*paths, entities)
    pd.testing.assert_frame_equal(from_files, build_features(events, customers, entities))
    # a second call on the shared default engine must not trip over the first one's views
    pd.testing.assert_frame_equal(build_features(*paths, entities), from_files)


def test_build_features_rejects_unusable_input() -> None:
    customers = customers_frame()
    events = events_frame(event("C1", T0 - DAY, "visit"))
    entities = entities_frame(("C1", T0))
    with pytest.raises(ValueError, match="events: required column"):
        build_features(events.drop(columns="event_type"), customers, entities)
    with pytest.raises(ValueError, match="customers: required column missing: signup_date"):
        build_features(events, customers.drop(columns="signup_date"), entities)
    with pytest.raises(ValueError, match="entities: cutoff must not be missing"):
        build_features(events, customers, entities.assign(cutoff=pd.NaT))
    dated = customers.assign(last_login=pd.Timestamp("2025-01-01"))
    with pytest.raises(ValueError, match="'last_login' has an unsupported type"):
        build_features(events, dated, entities)
    clash = customers.assign(n_visit_30d=3)
    with pytest.raises(ValueError, match="'n_visit_30d' clashes"):
        build_features(events, clash, entities)


def test_reject_feature_set_looking_past_the_cutoff() -> None:
    future = Scan("peek", (Aggregate("n_next", "count(*)"),), window_days=30, direction="future")
    with pytest.raises(ValueError, match="may not look past the cutoff"):
        FeatureSet("bad", "0", {}, (future,), (Feature("n", "n_next", "int64", ""),))


def test_reject_feature_set_with_duplicate_aggregates() -> None:
    scans = (
        Scan("a", (Aggregate("n", "count(*)"),)),
        Scan("b", (Aggregate("n", "count(*)"),), window_days=7),
    )
    with pytest.raises(ValueError, match="unique across scans"):
        FeatureSet("bad", "0", {}, scans, (Feature("n", "n", "int64", ""),))


def test_compile_partials_refuses_cutoff_in_unbounded_scan() -> None:
    scan = Scan("history", (Aggregate("n", "count(*) FILTER (WHERE timestamp < cutoff)"),))
    with pytest.raises(ValueError, match="may not reference the cutoff"):
        compile_partials(scan, [T0])


@pytest.mark.parametrize("plan", ["by_cutoff", "join"])
def test_build_features_keeps_latest_survey_answer_across_cutoffs(plan: Plan) -> None:
    events = events_frame(
        event("C1", T0 - 40 * DAY, "nps", score=9.0),
        event("C1", T0 - 10 * DAY, "nps", score=2.0),
        event("C1", T0 - 10 * DAY, "nps", score=3.0),  # same instant: the higher answer
        event("C1", T0 + 5 * DAY, "visit"),
    )
    cutoffs = [T0 - 20 * DAY, T0, T0 + 30 * DAY]  # the last segment has no answer
    frame = build_features(
        events,
        customers_frame(customer()),
        entities_frame(*(("C1", c) for c in cutoffs)),
        plan=plan,
    )
    assert frame["last_nps"].tolist() == [9.0, 3.0, 3.0]  # the latest, not the highest
    assert frame["avg_nps"].tolist() == pytest.approx([9.0, 14 / 3, 14 / 3])


def test_merge_scans_joins_only_scans_over_the_same_rows() -> None:
    a = Scan("a", (Aggregate("n_a", "count(*)"),), window_days=90)
    b = Scan("b", (Aggregate("n_b", "max(timestamp)", "max"),), where=" true ", window_days=90)
    c = Scan("c", (Aggregate("n_c", "count(*)"),), window_days=30)
    d = Scan("d", (Aggregate("n_d", "count(*)"),), where="event_type = 'visit'", window_days=90)
    merged = merge_scans(QuerySpec({}, (a, b, c, d), ()))
    assert [s.name for s in merged.scans] == ["a", "c", "d"]
    assert [x.name for x in merged.scans[0].aggregates] == ["n_a", "n_b"]


def test_source_window_covers_every_reader_and_nothing_more() -> None:
    past = Scan("p", (Aggregate("n_p", "count(*)"),), window_days=30, source="s")
    future = Scan(
        "f", (Aggregate("n_f", "count(*)"),), window_days=10, source="s", direction="future"
    )
    spec = QuerySpec({"s": "SELECT * FROM events"}, (past, future), ())
    window = source_window(spec, "s", [T0, T0 + 5 * DAY])
    assert window == (
        f"timestamp BETWEEN {sql_timestamp(T0 - 30 * DAY)} AND {sql_timestamp(T0 + 15 * DAY)}"
    )
    everything = Scan("h", (Aggregate("n_h", "count(*)"),), source="s")
    assert source_window(replace(spec, scans=(past, everything)), "s", [T0]) is None
    read_by_source = {"s": "SELECT * FROM events", "t": "SELECT * FROM s"}
    assert source_window(replace(spec, sources=read_by_source), "s", [T0]) is None
    assert shared_sources(replace(spec, sources=read_by_source)) == {"s"}

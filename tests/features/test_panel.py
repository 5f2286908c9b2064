"""Training panels: who is active at T, the churn and CLV labels, cutoffs, online = offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.definitions import CHURN_FEATURES
from features.engine import DuckDBEngine
from features.panel import (
    build_panel,
    monthly_cutoffs,
    online_features,
    split_columns,
    write_panel,
)
from tests.factories import (
    DAY,
    T0,
    customer,
    customers_frame,
    event,
    events_frame,
    random_world,
)

H = 90
US = pd.Timedelta(microseconds=1)
END = T0 + 400 * DAY  # data end for the hand-made cases: every label window is complete


def _reference() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "pandas_reference.py"
    spec = importlib.util.spec_from_file_location("pandas_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panel_of(*events: dict[str, Any], signup: pd.Timestamp = T0 - 365 * DAY) -> pd.DataFrame:
    return build_panel(
        events_frame(*events),
        customers_frame(customer("C1", signup)),
        [T0],
        horizon_days=H,
        as_of=END,
    )


def bought(at: pd.Timestamp, amount: float = 10.0) -> dict[str, Any]:
    return event("C1", at, "purchase", amount=amount)


@pytest.mark.parametrize(
    ("history", "signup", "active"),
    [
        ([bought(T0 - 10 * DAY)], T0 - 365 * DAY, True),
        ([bought(T0 - H * DAY)], T0 - 365 * DAY, True),  # [T - H, T) includes T - H
        ([bought(T0 - H * DAY - US)], T0 - 365 * DAY, False),  # no purchase in the last H days
        ([bought(T0)], T0 - 365 * DAY, False),  # a purchase at T is not before T
        ([event("C1", T0 - DAY, "visit")], T0 - 365 * DAY, False),  # events, but no purchase
        ([bought(T0 - 10 * DAY)], T0, False),  # signed up at T: not before it
        ([bought(T0 - 10 * DAY), event("C1", T0 - 5 * DAY, "cancellation")], T0 - 365 * DAY, False),
        (
            [bought(T0 - 10 * DAY), event("C1", T0 - 10 * DAY, "cancellation")],
            T0 - 365 * DAY,
            False,
        ),
        ([event("C1", T0 - 20 * DAY, "cancellation"), bought(T0 - 10 * DAY)], T0 - 365 * DAY, True),
    ],
    ids=[
        "recent_purchase",
        "purchase_at_window_start",
        "purchase_just_too_old",
        "purchase_at_cutoff",
        "no_purchase",
        "signup_at_cutoff",
        "cancelled_after_last_purchase",
        "cancelled_with_last_purchase",
        "came_back_after_cancelling",
    ],
)
def test_build_panel_keeps_only_active_customers(
    history: list[dict[str, Any]], signup: pd.Timestamp, active: bool
) -> None:
    assert len(panel_of(*history, signup=signup)) == int(active)


ACTIVE = bought(T0 - 10 * DAY)


@pytest.mark.parametrize(
    ("future", "churned"),
    [
        ([], True),
        ([bought(T0 + DAY)], False),
        ([bought(T0 + H * DAY)], False),  # (T, T + H] includes T + H
        ([bought(T0 + H * DAY + US)], True),
        ([bought(T0)], True),  # at T: neither history nor future
        ([bought(T0 + DAY), event("C1", T0 + 30 * DAY, "cancellation")], True),
        ([bought(T0 + DAY), event("C1", T0 + H * DAY + DAY, "cancellation")], False),
        ([event("C1", T0 + DAY, "visit")], True),
    ],
    ids=[
        "nothing",
        "purchase_next_day",
        "purchase_at_horizon",
        "purchase_after_horizon",
        "purchase_at_cutoff",
        "cancellation_in_window",
        "cancellation_after_window",
        "visit_only",
    ],
)
def test_build_panel_labels_churn(future: list[dict[str, Any]], churned: bool) -> None:
    panel = panel_of(ACTIVE, *future)
    assert panel["churned"].tolist() == [churned]


def test_build_panel_computes_clv_as_net_revenue() -> None:
    panel = panel_of(
        ACTIVE,
        bought(T0 + DAY, 100.0),
        bought(T0 + 365 * DAY, 50.0),  # (T, T + 365d] includes the end
        bought(T0 + 365 * DAY + US, 1000.0),
        event("C1", T0 + 20 * DAY, "refund", amount=30.0),
    )
    assert panel["clv_365"].tolist() == [120.0]
    assert panel["clv_complete"].tolist() == [True]
    assert panel["clv_365"].dtype == "float64"


def test_build_panel_hides_incomplete_clv() -> None:
    events = events_frame(ACTIVE, bought(T0 + DAY, 100.0))
    panel = build_panel(events, customers_frame(customer("C1")), [T0], as_of=T0 + 100 * DAY)
    assert panel["label_complete"].tolist() == [True]
    assert panel["clv_complete"].tolist() == [False]
    assert panel["clv_365"].isna().all()


def test_build_panel_rejects_incomplete_label_window() -> None:
    events = events_frame(ACTIVE)
    customers = customers_frame(customer("C1"))
    with pytest.raises(ValueError, match=r"cutoff\(s\) 2025-06-01 ends after the data end"):
        build_panel(events, customers, [T0], as_of=T0 + 89 * DAY)
    panel = build_panel(events, customers, [T0], as_of=T0 + 89 * DAY, allow_incomplete=True)
    assert panel["label_complete"].tolist() == [False]


def test_build_panel_gives_features_then_labels() -> None:
    customers, events = random_world(5)
    panel = build_panel(events, customers, monthly_cutoffs(events, 3, H))
    features, labels = split_columns(panel)
    assert features == [*CHURN_FEATURES.columns, "age", "tier"]
    assert labels == ["churned", "clv_365", "label_complete", "clv_complete"]
    assert list(panel.columns) == ["customer_id", "cutoff", *features, *labels]
    assert panel["churned"].dtype == bool
    assert panel["cutoff"].is_monotonic_increasing
    assert not panel.duplicated(["customer_id", "cutoff"]).any()
    assert 0 < panel["churned"].mean() < 1


def test_pick_monthly_cutoffs_with_complete_labels() -> None:
    events = events_frame(
        event("C1", "2024-11-15", "visit"), event("C1", "2025-09-15 10:00", "visit")
    )
    # the data ends 2025-09-15 10:00; minus 90 days is 2025-06-17, so June is the latest
    assert monthly_cutoffs(events, 3, 90) == [
        pd.Timestamp("2025-04-01"),
        pd.Timestamp("2025-05-01"),
        pd.Timestamp("2025-06-01"),
    ]
    # only month starts after the first event qualify
    assert monthly_cutoffs(events, 12, 90)[0] == pd.Timestamp("2024-12-01")
    assert monthly_cutoffs(events, 1, 90, as_of=pd.Timestamp("2025-09-01")) == [
        pd.Timestamp("2025-06-01")
    ]
    with pytest.raises(ValueError, match="no month start"):
        monthly_cutoffs(events, 2, 400)


def test_match_online_features_to_panel_rows() -> None:
    customers, events = random_world(6)
    cutoffs = monthly_cutoffs(events, 2, H)
    panel = build_panel(events, customers, cutoffs)
    features, _ = split_columns(panel)
    assert len(panel) > 20
    for _, row in panel.sample(25, random_state=0).iterrows():
        mine = events[events["customer_id"] == row["customer_id"]]
        who = customers[customers["customer_id"] == row["customer_id"]]
        online = online_features(mine, who, row["cutoff"])
        expected = panel.loc[[row.name], ["customer_id", "cutoff", *features]]
        pd.testing.assert_frame_equal(online, expected.reset_index(drop=True))


def test_build_panel_matches_pandas_reference() -> None:
    reference = _reference()
    customers, events = random_world(7, n_customers=60)
    cutoffs = monthly_cutoffs(events, 4, H)
    ours = build_panel(events, customers, cutoffs)
    theirs = reference.build_panel_pandas(events, customers, cutoffs)
    assert len(ours) > 50
    pd.testing.assert_frame_equal(ours, theirs[list(ours.columns)], check_exact=False, rtol=1e-9)


def test_build_panel_gives_the_same_panel_on_both_plans() -> None:
    customers, events = random_world(8)
    cutoffs = monthly_cutoffs(events, 3, H)
    join = build_panel(events, customers, cutoffs, engine=DuckDBEngine(plan="join"))
    by_cutoff = build_panel(events, customers, cutoffs, plan="by_cutoff")
    pd.testing.assert_frame_equal(by_cutoff, join, check_exact=False, rtol=1e-12)
    bucketed = DuckDBEngine(plan="by_cutoff", max_customers_per_query=9)  # several queries each
    in_buckets = build_panel(events, customers, cutoffs, engine=bucketed)
    pd.testing.assert_frame_equal(in_buckets, join, check_exact=False, rtol=1e-12)
    assert np.isfinite(join["days_since_last_purchase"]).all()  # active: bought recently


def test_write_panel_writes_the_built_panel_cutoff_by_cutoff(tmp_path: Path) -> None:
    customers, events = random_world(9)
    cutoffs = monthly_cutoffs(events, 3, H)
    done: list[pd.Timestamp] = []
    bucketed = DuckDBEngine(max_customers_per_query=9)
    written = write_panel(
        events,
        customers,
        cutoffs,
        tmp_path / "panel.parquet",
        on_cutoff=done.append,
        engine=bucketed,
    )
    expected = build_panel(events, customers, cutoffs)
    pd.testing.assert_frame_equal(pd.read_parquet(written.path), expected)
    assert done == cutoffs
    assert (written.rows, written.columns, written.cutoffs) == (len(expected), expected.shape[1], 3)
    assert written.churned == expected["churned"].sum() > 0


def test_write_panel_leaves_no_file_when_interrupted(tmp_path: Path) -> None:
    customers, events = random_world(9)
    cutoffs = monthly_cutoffs(events, 3, H)
    target = tmp_path / "panel.parquet"
    target.write_bytes(b"the previous panel")

    def stop_after_first(cutoff: pd.Timestamp) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_panel(events, customers, cutoffs, target, on_cutoff=stop_after_first)
    assert target.read_bytes() == b"the previous panel"
    assert [p.name for p in tmp_path.iterdir()] == ["panel.parquet"]

"""No feature at cutoff T can see an event at or after T: adding, removing or changing such events
changes nothing at T (nor at any earlier cutoff computed in the same call)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import EVENT_TYPES
from features.engine import DuckDBEngine, Plan, build_features
from features.panel import build_panel, split_columns
from tests.factories import T0, customer, customers_frame, entities_frame, event, events_frame

CUSTOMERS = ("C1", "C2", "C3")
HOUR = pd.Timedelta(hours=1)
EARLIER = T0 - 45 * pd.Timedelta(days=1)  # another cutoff before T: must not change either
LATER = T0 + 30 * pd.Timedelta(days=1)  # a cutoff after T: may change, and must not leak back
KINDS = (*EVENT_TYPES, "app_install")
SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def events_between(draw: st.DrawFn, first_hour: int, last_hour: int) -> dict[str, Any]:
    """One event of any type, `first_hour`..`last_hour` hours from T (both included)."""
    kind = draw(st.sampled_from(KINDS))
    hours = draw(st.integers(first_hour, last_hour))
    amount = draw(st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 2)))
    offer = draw(st.sampled_from(["none", "discount_10", "free_shipping"]))
    return event(
        draw(st.sampled_from(CUSTOMERS)),
        T0 + hours * HOUR,
        kind,
        amount=amount if kind in ("purchase", "refund") else None,
        offer_id=offer if kind in ("offer_sent", "offer_redeemed") else None,
        score=float(draw(st.integers(0, 10) if kind == "nps" else st.integers(1, 5)))
        if kind in ("nps", "csat")
        else None,
    )


PAST = events_between(-500 * 24, -1)
FUTURE = events_between(0, 400 * 24)  # hour 0 is exactly T


@st.composite
def changed(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """The same future event with another type, amount, score, customer or (future) time."""
    other = draw(FUTURE)
    keep = draw(st.sets(st.sampled_from(sorted(other)), max_size=len(other)))
    return {key: original[key] if key in keep else other[key] for key in original}


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, events with everything at or after T added, removed or changed)."""
    past = draw(st.lists(PAST, max_size=40))
    future = draw(st.lists(FUTURE, max_size=15))
    kept = [e for e in future if draw(st.booleans())]
    edited = [draw(changed(e)) if draw(st.booleans()) else e for e in kept]
    added = draw(st.lists(FUTURE, max_size=15))
    return past + future, past + edited + added


def _customers() -> pd.DataFrame:
    return customers_frame(*(customer(c, T0 - 700 * pd.Timedelta(days=1)) for c in CUSTOMERS))


def _features(events: list[dict[str, Any]], plan: Plan) -> pd.DataFrame:
    entities = entities_frame(*[(c, t) for t in (EARLIER, T0, LATER) for c in CUSTOMERS])
    frame = build_features(events_frame(*events), _customers(), entities, plan=plan)
    return frame[frame["cutoff"] <= T0].reset_index(drop=True)


def _assert_same_past(pair: tuple[list[dict[str, Any]], list[dict[str, Any]]], plan: Plan) -> None:
    original, edited = pair
    pd.testing.assert_frame_equal(
        _features(edited, plan), _features(original, plan), check_exact=False, rtol=1e-12
    )


@settings(SETTINGS, max_examples=25)
@given(pair=histories())
def test_build_features_ignores_events_at_or_after_cutoff_join(
    pair: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    _assert_same_past(pair, "join")


@pytest.mark.slow
@settings(SETTINGS, max_examples=15)
@given(pair=histories())
def test_build_features_ignores_events_at_or_after_cutoff_by_cutoff(
    pair: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    _assert_same_past(pair, "by_cutoff")  # time segments merged per cutoff must not bleed


@pytest.mark.slow
@settings(SETTINGS, max_examples=12)
@given(pair=histories())
def test_build_panel_keeps_rows_and_features_when_the_future_changes(
    pair: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    original, edited = pair
    end = T0 + 500 * pd.Timedelta(days=1)

    def panel(events: list[dict[str, Any]]) -> pd.DataFrame:
        frame = build_panel(events_frame(*events), _customers(), [EARLIER, T0], as_of=end)
        return frame[["customer_id", "cutoff", *split_columns(frame)[0]]]

    pd.testing.assert_frame_equal(panel(edited), panel(original), check_exact=False, rtol=1e-12)


def test_build_features_sees_events_just_before_cutoff() -> None:
    """The property above would also hold for an engine that ignores everything: it does not."""
    events = [event("C1", T0 - pd.Timedelta(microseconds=1), "purchase", amount=5.0)]
    row = build_features(
        events_frame(*events),
        _customers(),
        entities_frame(("C1", T0)),
        engine=DuckDBEngine(plan="by_cutoff"),
    ).iloc[0]
    assert (row["n_purchase_7d"], row["revenue_7d"]) == (1, 5.0)

"""The online store, on SQLite and PostgreSQL (see conftest.py): round trips, idempotency,
point-in-time reads, decisions and outcomes, durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import EVENT_COLUMNS, validate_customers, validate_events
from features.io import Dataset
from serving.online import signatures
from serving.store import (
    SQLITE_MAX_PARAMETERS,
    Decision,
    DuplicateDecision,
    IngestResult,
    LoadResult,
    Store,
    StoreError,
    UnknownCustomers,
    UnknownDecision,
    decisions,
    events,
    new_decision,
)

NOW = pd.Timestamp("2025-06-01")
T = pd.Timestamp("2025-03-01 12:00:00")
US = pd.Timedelta(microseconds=1)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def make_customers(ids: list[str], **columns: Any) -> pd.DataFrame:
    raw = pd.DataFrame({"customer_id": ids, "signup_date": "2024-01-15", **columns})
    validated = validate_customers(raw, now=NOW)
    assert validated.errors.empty, validated.errors
    return validated.valid


def make_events(rows: list[dict[str, Any]]) -> pd.DataFrame:
    validated = validate_events(pd.DataFrame(rows), now=NOW)
    assert validated.errors.empty, validated.errors
    return validated.valid


def purchases(customer_id: str, times: list[pd.Timestamp], prefix: str = "p") -> pd.DataFrame:
    return make_events(
        [
            {
                "event_id": f"{prefix}{i}",
                "customer_id": customer_id,
                "timestamp": time.isoformat(),
                "event_type": "purchase",
                "amount": float(i),
            }
            for i, time in enumerate(times)
        ]
    )


def in_store_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["timestamp", "event_id"]).reset_index(drop=True)


# --- events ------------------------------------------------------------------------------------


def test_ingest_events_round_trips_values_and_dtypes(store: Store) -> None:
    store.upsert_customers(make_customers(["C1", "C2"]))
    valid = make_events(
        [
            {
                "event_id": "e1",
                "customer_id": "C1",
                "timestamp": "2025-01-02T10:00:00.654321+02:00",
                "event_type": "purchase",
                "amount": "19.99",
                "channel": "café ☕",
            },
            {
                "event_id": "e2",
                "customer_id": "C1",
                "timestamp": "2025-01-01",
                "event_type": "nps",
                "score": "9",
            },
            {
                "event_id": "e3",
                "customer_id": "C1",
                "timestamp": "2025-01-03 00:00:00.000001",
                "event_type": "offer_sent",
                "offer_id": "d10",
                "propensity": "0.125",
                "channel": "email",
            },
            {
                "event_id": "e4",
                "customer_id": "C1",
                "timestamp": "2025-01-04",
                "event_type": "visit",
            },
            {
                "event_id": "other",
                "customer_id": "C2",
                "timestamp": "2025-01-01",
                "event_type": "visit",
            },
        ]
    )

    assert store.ingest_events(valid) == IngestResult(inserted=5, duplicates=0)

    got = store.events_of("C1")
    expected = in_store_order(valid[valid["customer_id"] == "C1"])
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(got.columns) == list(EVENT_COLUMNS)
    assert got["timestamp"].dtype == "datetime64[us]"
    assert got.loc[got["event_id"] == "e1", "timestamp"].item() == pd.Timestamp(
        "2025-01-02 08:00:00.654321"
    )


texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
floats = st.none() | st.floats(allow_nan=False, allow_infinity=False)
event_rows = st.lists(
    st.tuples(
        texts,
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)),
        texts,
        floats,
        st.none() | texts,
        st.none() | texts,
        floats,
        floats,
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda row: row[0],
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=event_rows)
def test_ingest_events_round_trips_any_values(store: Store, rows: list[tuple[Any, ...]]) -> None:
    customer_id = uuid.uuid4().hex  # the store is shared by the examples of one test
    store.upsert_customers(make_customers([customer_id]))
    ids, times, kinds, amounts, channels, offers, propensities, scores = zip(*rows, strict=True)
    frame = pd.DataFrame(
        {
            "event_id": pd.Series([f"{customer_id}/{i}" for i in ids], dtype="str"),
            "customer_id": pd.Series([customer_id] * len(rows), dtype="str"),
            "timestamp": pd.Series(times, dtype="datetime64[us]"),
            "event_type": pd.Series(kinds, dtype="str"),
            "amount": pd.Series(amounts, dtype="float64"),
            "channel": pd.Series(channels, dtype="str"),
            "offer_id": pd.Series(offers, dtype="str"),
            "propensity": pd.Series(propensities, dtype="float64"),
            "score": pd.Series(scores, dtype="float64"),
        }
    )

    assert store.ingest_events(frame) == IngestResult(len(rows), 0)

    # Ties in time are ordered by the database's collation, which need not be Python's.
    got = in_store_order(store.events_of(customer_id))
    pd.testing.assert_frame_equal(got, in_store_order(frame), check_exact=True)


def test_ingest_events_same_batch_twice_inserts_nothing(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    batch = purchases("C1", [T, T + US, T + 2 * US])

    assert store.ingest_events(batch) == IngestResult(inserted=3, duplicates=0)
    assert store.ingest_events(batch) == IngestResult(inserted=0, duplicates=3)
    assert len(store.events_of("C1")) == 3


def test_ingest_events_overlapping_batch_inserts_only_new(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    first = purchases("C1", [T, T + US])  # p0, p1
    second = purchases("C1", [T + 5 * US, T + 6 * US, T + 7 * US])  # p0, p1, p2
    second["amount"] = [100.0, 101.0, 102.0]

    store.ingest_events(first)
    assert store.ingest_events(second) == IngestResult(inserted=1, duplicates=2)

    stored = store.events_of("C1").set_index("event_id")
    # A repeated id is skipped, not an update: the first write stands.
    assert stored["amount"].to_dict() == {"p0": 0.0, "p1": 1.0, "p2": 102.0}
    assert stored.loc["p2", "timestamp"] == T + 7 * US


def test_ingest_events_repeated_id_within_batch_counts_once(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    batch = purchases("C1", [T, T + US])
    batch["event_id"] = ["same", "same"]  # the contract would reject this; the store copes

    assert store.ingest_events(batch) == IngestResult(inserted=1, duplicates=1)
    assert store.events_of("C1")["timestamp"].tolist() == [T]


def test_ingest_events_unknown_customer_raises_and_stores_nothing(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    batch = pd.concat([purchases("C1", [T]), purchases("C404", [T], prefix="x")])

    with pytest.raises(UnknownCustomers) as raised:
        store.ingest_events(batch)

    assert raised.value.customer_ids == ["C404"]
    assert store.events_of("C1").empty


def test_ingest_events_without_event_id_raises_before_writing(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    batch = purchases("C1", [T, T + US])
    batch.loc[1, "event_id"] = None

    with pytest.raises(ValueError, match="no event_id at position 1"):
        store.ingest_events(batch)

    assert store.events_of("C1").empty


def test_ingest_events_accepts_object_columns(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    batch = purchases("C1", [T, T + US]).astype({"channel": object, "amount": object})
    batch["channel"] = ["web", None]
    batch["amount"] = [np.float64(2.5), None]

    assert store.ingest_events(batch).inserted == 2
    got = store.events_of("C1")
    assert got["channel"].tolist()[0] == "web" and pd.isna(got["channel"].tolist()[1])
    assert got["amount"].tolist()[0] == 2.5 and np.isnan(got["amount"].tolist()[1])


def test_ingest_events_stores_a_10k_batch(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    times = list(pd.date_range(T - pd.Timedelta(days=300), periods=10_000, freq="37min"))
    batch = purchases("C1", times)

    assert store.ingest_events(batch) == IngestResult(inserted=10_000, duplicates=0)
    pd.testing.assert_frame_equal(store.events_of("C1"), in_store_order(batch), check_exact=True)


def test_events_of_excludes_events_at_or_after_before(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    store.ingest_events(purchases("C1", [T - US, T, T + US]))

    def times(before: pd.Timestamp | datetime | None) -> list[pd.Timestamp]:
        return store.events_of("C1", before=before)["timestamp"].tolist()

    assert times(T) == [T - US]
    assert times(T + US) == [T - US, T]
    assert times(T.to_pydatetime()) == [T - US]
    assert times(T.tz_localize("UTC").tz_convert("Asia/Kolkata")) == [T - US]
    assert times(T + pd.Timedelta(nanoseconds=500)) == [T - US, T]
    assert times(T - US) == []
    assert times(None) == [T - US, T, T + US]


def test_events_of_unknown_customer_is_empty_with_contract_dtypes(store: Store) -> None:
    got = store.events_of("nobody")

    assert got.empty
    assert list(got.columns) == list(EVENT_COLUMNS)
    pd.testing.assert_series_equal(got.dtypes, purchases("X", [T]).dtypes)


# --- customers ---------------------------------------------------------------------------------


def test_upsert_customers_round_trips_with_attributes(store: Store) -> None:
    frame = make_customers(
        ["C1", "C2"],
        country=["de", None],
        segment=["retail", "business"],
        loyalty_member=["yes", "no"],
        ltv=[3.5, np.nan],
        tier=["gold", None],
    )

    assert store.upsert_customers(frame) == 2

    got = store.customers_frame(["C2", "nobody", "C1"])
    pd.testing.assert_frame_equal(got, frame.iloc[[1, 0]].reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(store.customers_frame(), frame, check_exact=True)


def test_upsert_customers_replaces_the_whole_customer(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"], segment=["retail"], tier=["gold"]))
    store.upsert_customers(make_customers(["C1"], segment=["business"], ltv=[7.0]))

    assert store.customer("C1") == {
        "customer_id": "C1",
        "signup_date": pd.Timestamp("2024-01-15"),
        "country": None,
        "language": "en",
        "segment": "business",
        "loyalty_member": False,
        "marketing_consent": False,
        "ltv": 7.0,
    }


def test_customer_unknown_is_none(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))

    assert store.customer("C2") is None


def test_known_customer_ids_returns_only_stored(store: Store) -> None:
    store.upsert_customers(make_customers(["C1", "C2", "C3"]))
    asked = [f"X{i}" for i in range(12_000)] + ["C3", "C1", "C1"]  # more than one IN chunk

    assert store.known_customer_ids(asked) == {"C1", "C3"}
    assert store.known_customer_ids(pd.Series(["C2", None, np.nan], dtype=object)) == {"C2"}
    assert store.known_customer_ids([]) == set()


# --- bulk load ---------------------------------------------------------------------------------


def small_dataset(customer_ids: list[str]) -> Dataset:
    rows = [
        {
            "event_id": f"{customer}-{i}",
            "customer_id": customer,
            "timestamp": (T + i * US).isoformat(),
            "event_type": "purchase",
            "amount": i,
        }
        for customer in customer_ids
        for i in range(5)
    ]
    return Dataset(customers=make_customers(customer_ids), events=make_events(rows), offers=[])


def test_load_dataset_loads_in_chunks_and_reloads_idempotently(store: Store) -> None:
    dataset = small_dataset(["C1", "C2", "C3", "C4", "C5"])

    first = store.load_dataset(dataset, chunk_size=4)
    again = store.load_dataset(dataset, chunk_size=4)

    assert first == LoadResult(customers=5, events=IngestResult(inserted=25, duplicates=0))
    assert again == LoadResult(customers=5, events=IngestResult(inserted=0, duplicates=25))
    pd.testing.assert_frame_equal(store.customers_frame(), dataset.customers, check_exact=True)
    expected = in_store_order(dataset.events[dataset.events["customer_id"] == "C3"])
    pd.testing.assert_frame_equal(store.events_of("C3"), expected, check_exact=True)


def test_load_dataset_with_unknown_customer_stores_nothing(store: Store) -> None:
    dataset = small_dataset(["C1", "C2"])
    dataset.customers = dataset.customers[dataset.customers["customer_id"] == "C1"]

    with pytest.raises(UnknownCustomers) as raised:
        store.load_dataset(dataset, chunk_size=3)

    assert raised.value.customer_ids == ["C2"]
    assert store.customers_frame().empty  # one transaction: C1 was rolled back too


# --- decisions and outcomes --------------------------------------------------------------------


def record(store: Store, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "customer_id": "C1",
        "offer_id": "d10",
        "model_version": "churn@3",
        "propensity": 0.8,
        "expected_value": 4.25,
    }
    return store.record_decision(**(arguments | overrides))


def test_record_decision_round_trips(store: Store) -> None:
    decision = record(
        store,
        expected_value=float("nan"),
        created_at=pd.Timestamp("2025-03-04 05:06:07.123456", tz="Europe/Berlin"),
        context={"features": {"recency": np.float64(3.0), "nps": float("nan")}, "as_of": T},
        candidates=[{"offer_id": "d10", "score": 0.31}, {"offer_id": "none", "score": 0.0}],
    )

    assert store.decision(decision.decision_id) == decision
    assert decision.created_at == datetime(2025, 3, 4, 4, 6, 7, 123456)
    assert decision.expected_value is None
    assert decision.context == {
        "features": {"recency": 3.0, "nps": None},
        "as_of": "2025-03-01T12:00:00",
    }
    assert decision.candidates[0] == {"offer_id": "d10", "score": 0.31}


def test_decision_unknown_is_none(store: Store) -> None:
    assert store.decision("nope") is None


@pytest.mark.parametrize("propensity", [0.0, -0.1, 1.5])
def test_record_decision_rejects_propensity_outside_unit_interval(
    store: Store, propensity: float
) -> None:
    with pytest.raises(ValueError, match="not in"):
        record(store, decision_id="d", propensity=propensity)

    assert store.decision("d") is None


def test_record_decision_twice_raises_and_keeps_first(store: Store) -> None:
    first = record(store, decision_id="d1")

    with pytest.raises(DuplicateDecision):
        record(store, decision_id="d1", offer_id="other")

    assert store.decision("d1") == first


def test_record_outcome_is_idempotent(store: Store) -> None:
    decision = record(store)

    assert store.record_outcome(decision.decision_id, "redeemed", 25.0) is True
    assert store.record_outcome(decision.decision_id, "redeemed", 99.0) is False
    assert store.record_outcome(decision.decision_id, "retained") is True

    stored = {o.kind: o.value for o in store.outcomes_of(decision.decision_id)}
    assert stored == {"redeemed": 25.0, "retained": None}


def test_record_outcome_unknown_decision_raises(store: Store) -> None:
    with pytest.raises(UnknownDecision, match="nope"):
        store.record_outcome("nope", "redeemed")

    assert store.outcomes_of("nope") == []


def test_record_outcome_unknown_kind_raises(store: Store) -> None:
    decision = record(store)

    with pytest.raises(ValueError, match="unknown outcome kind"):
        store.record_outcome(decision.decision_id, "redeem")


def test_record_outcome_from_many_threads_at_once(store: Store) -> None:
    # Each call reads (does the decision exist?) then writes; on SQLite that only works under
    # concurrency if the transaction takes the write lock first (BEGIN IMMEDIATE).
    ids = [record(store, decision_id=f"d{i}").decision_id for i in range(160)]

    def work(part: list[str]) -> list[bool]:
        return [store.record_outcome(decision_id, "redeemed", 1.0) for decision_id in part]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, [ids[i::8] for i in range(8)]))

    assert all(all(part) for part in results)
    assert all(len(store.outcomes_of(decision_id)) == 1 for decision_id in ids)


def test_recent_offer_count_counts_decisions_and_offer_sent_events(store: Store) -> None:
    store.upsert_customers(make_customers(["C1", "C2"]))
    day = pd.Timedelta(days=1)
    for customer, offer, at in [
        ("C1", "d10", T - US),  # before the window
        ("C1", "d10", T),  # counted: the window includes `since`
        ("C1", "d10", T + day),  # counted
        ("C1", "d20", T + day),  # another offer
        ("C2", "d10", T + day),  # another customer
    ]:
        record(store, customer_id=customer, offer_id=offer, created_at=at)
    events = [
        ("s1", "offer_sent", "d10", T + 2 * day),  # counted
        ("s2", "offer_sent", "d10", T - day),  # before the window
        ("s3", "offer_redeemed", "d10", T + 2 * day),  # not a contact
        ("s4", "offer_sent", "d20", T + 2 * day),  # another offer
    ]
    store.ingest_events(
        make_events(
            [
                {
                    "event_id": event_id,
                    "customer_id": "C1",
                    "timestamp": at.isoformat(),
                    "event_type": kind,
                    "offer_id": offer,
                }
                for event_id, kind, offer, at in events
            ]
        )
    )

    assert store.recent_offer_count("C1", "d10", since=T) == 3
    assert store.recent_offer_count("C1", "d10", since=T.tz_localize("UTC")) == 3
    assert store.recent_offer_count("C1", "d20", since=T) == 2
    assert store.recent_offer_count("C2", "d20", since=T) == 0


# --- prepared statements -----------------------------------------------------------------------


def test_prepared_first_binds_times_as_sqlalchemy_does(store: Store) -> None:
    store.upsert_customers(make_customers(["C1"]))
    store.ingest_events(purchases("C1", [T - US, T, T + US]))
    query = (
        sa.select(sa.func.count())
        .select_from(events)
        .where(events.c.customer_id == sa.bindparam("id"), events.c.timestamp >= sa.bindparam("t"))
    )

    counts = []
    for since in (T - US, T, T + US, T + 2 * US):
        with store.engine.connect() as conn:
            expected = conn.execute(query, {"id": "C1", "t": since.to_pydatetime()}).scalar()
        assert store.prepared(query).first(id="C1", t=since.to_pydatetime()) == (expected,)
        counts.append(expected)
    assert counts == [3, 2, 1, 0]
    assert store.prepared(query).first(id="C2", t=T.to_pydatetime()) == (0,)


def test_prepared_write_many_stores_what_record_decision_stores(store: Store) -> None:
    written = [
        new_decision(
            customer_id=f"C{i}",
            offer_id="d10",
            model_version="next-offer:1",
            propensity=0.5,
            expected_value=float("nan") if i else 1.5,
            context={"as_of": T, "score": np.float64(0.25), "missing": float("inf")},
            candidates=[{"offer_id": "d10", "probability": 0.5}],
            created_at=T + i * US,
        )
        for i in range(3)
    ]

    store.prepared(decisions.insert()).write_many([vars(d) for d in written])

    assert [store.decision(d.decision_id) for d in written] == written


def test_prepared_write_many_is_one_transaction(store: Store) -> None:
    first, again = (
        new_decision(
            customer_id="C1",
            offer_id=offer,
            model_version="next-offer:1",
            propensity=None,
            expected_value=None,
            context={},
            candidates=[],
            created_at=T,
            decision_id="same",
        )
        for offer in ("d10", "none")
    )

    with pytest.raises(Exception, match="UNIQUE constraint|duplicate key"):
        store.prepared(decisions.insert()).write_many([vars(first), vars(again)])
    assert store.decision("same") is None


def no_offer_decision(decision_id: str, customer_id: str = "C1") -> Decision:
    return new_decision(
        customer_id=customer_id,
        offer_id="none",
        model_version="next-offer:1",
        propensity=1.0,
        expected_value=0.0,
        context={},
        candidates=[],
        created_at=T,
        decision_id=decision_id,
    )


def test_prepared_write_many_takes_batches_of_any_size(store: Store) -> None:
    def batch(size: int, prefix: str) -> list[Decision]:
        return [no_offer_decision(f"{prefix}{i}", f"C{i}") for i in range(size)]

    insert = store.prepared(decisions.insert())
    written = [*batch(1, "a"), *batch(3, "b"), *batch(1, "c")]
    for rows in (written[:1], written[1:4], [], written[4:]):
        insert.write_many([vars(d) for d in rows])

    assert [store.decision(d.decision_id) for d in written] == written


def test_prepared_write_many_refuses_more_parameters_than_sqlite_takes(
    sqlite_store: Store,
) -> None:
    row = vars(no_offer_decision("d"))
    too_many = SQLITE_MAX_PARAMETERS // len(row) + 1
    rows = [row | {"decision_id": f"d{i}"} for i in range(too_many)]

    with pytest.raises(ValueError, match="smaller batches"):
        sqlite_store.prepared(decisions.insert()).write_many(rows)
    assert sqlite_store.decision("d0") is None


def test_signature_of_one_customer_equals_its_batch_signature(store: Store) -> None:
    customers = make_customers(["C1", "C2"], loyalty_member=[True, False], tier=["gold", "none"])
    store.upsert_customers(customers)
    store.ingest_events(purchases("C1", [T]))

    one = signatures(store, ["C1"])
    assert one == {"C1": signatures(store, ["C1", "C2"])["C1"]}
    store.ingest_events(purchases("C1", [T + US], prefix="q"))
    assert signatures(store, ["C1"]) != one
    assert signatures(store, ["C1"]) == {"C1": signatures(store, ["C1", "C2"])["C1"]}
    store.upsert_customers(customers.assign(tier=["silver", "none"]))
    assert signatures(store, ["C1"])["C1"][0] == 2
    assert signatures(store, ["C1"])["C1"][1] != one["C1"][1]
    assert signatures(store, ["C1", "C2"])["C2"] == signatures(store, ["C2"])["C2"]


def test_background_checkpoints_move_commits_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "retain.db"
    with Store(f"sqlite:///{path}", background_checkpoints=True) as store:
        store.create_all()
        written = [record(store, customer_id=f"C{i}") for i in range(50)]
        with store.engine.connect() as conn:  # commits never checkpoint themselves
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0

        def in_database_file() -> int:
            # The database file alone, without its WAL: only checkpointed commits are there.
            copy = tmp_path / "copy.db"
            copy.write_bytes(path.read_bytes())
            try:
                with sqlite3.connect(copy) as conn:
                    return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
            except sqlite3.OperationalError:  # not even the table yet
                return 0

        deadline = time.monotonic() + 10
        while in_database_file() < len(written) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert in_database_file() == len(written)


# --- durability and configuration ---------------------------------------------------------------


def test_store_data_survives_reopen(database_url: str) -> None:
    with Store.from_url(database_url) as first:
        first.create_all()
        first.upsert_customers(make_customers(["C1"]))
        first.ingest_events(purchases("C1", [T, T + US]))
        decision = record(first)
        first.record_outcome(decision.decision_id, "declined")

    with Store.from_url(database_url) as second:
        second.create_all()  # a no-op on existing tables
        assert second.events_of("C1")["timestamp"].tolist() == [T, T + US]
        assert second.decision(decision.decision_id) == decision
        assert [o.kind for o in second.outcomes_of(decision.decision_id)] == ["declined"]
        assert second.record_outcome(decision.decision_id, "declined") is False


def test_sqlite_pragmas_are_in_effect_on_every_connection(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as one, sqlite_store.engine.connect() as two:
        for conn in (one, two):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


WRITER = """
import sys
import pandas as pd
from serving.store import Store

store = Store.from_url(sys.argv[1])
batch = 0
while True:
    size = 200
    frame = pd.DataFrame({
        "event_id": [f"b{batch}-{i}" for i in range(size)],
        "customer_id": ["C1"] * size,
        "timestamp": pd.Series([pd.Timestamp("2025-01-01")] * size, dtype="datetime64[us]"),
        "event_type": ["visit"] * size,
        "amount": [float(i) for i in range(size)],
        "channel": ["web"] * size,
        "offer_id": [None] * size,
        "propensity": [None] * size,
        "score": [None] * size,
    })
    store.ingest_events(frame)
    print(batch, flush=True)
    batch += 1
"""


def test_ingest_events_acknowledged_batches_survive_sigkill(
    store: Store, database_url: str
) -> None:
    store.upsert_customers(make_customers(["C1"]))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, database_url],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stderr is not None
    acknowledged: list[str] = []
    while len(acknowledged) < 15:
        line = writer.stdout.readline()
        if not line:
            writer.wait()
            pytest.fail(f"writer died: {writer.stderr.read()}")
        acknowledged.append(line)
    os.kill(writer.pid, signal.SIGKILL)  # mid-batch, most likely
    writer.wait()
    acknowledged += writer.stdout.readlines()
    writer.stdout.close()
    writer.stderr.close()
    acked = {int(line) for line in acknowledged}

    with Store.from_url(database_url) as reopened:
        stored = reopened.events_of("C1")
        per_batch = stored["event_id"].str.split("-").str[0].value_counts()
        if reopened.engine.dialect.name == "sqlite":
            with reopened.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"

    batches = {int(name.removeprefix("b")) for name in per_batch.index}
    assert acked <= batches  # every acknowledged batch is there …
    assert batches <= acked | {max(acked) + 1}  # … plus at most the one being written
    assert (per_batch == 200).all()  # and no batch is there in part


def test_from_url_maps_postgresql_to_psycopg() -> None:
    for url in ("postgresql://postgres@127.0.0.1:5432/test", "postgres://u:secret@h/db"):
        with Store.from_url(url) as store:  # engines connect lazily: nothing is opened here
            assert store.engine.dialect.name == "postgresql"
            assert store.engine.dialect.driver == "psycopg"
            assert "secret" not in repr(store)


def test_from_url_rejects_other_databases() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        Store.from_url("mysql://u@h/db")


def test_store_creates_the_sqlite_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "retain.db"

    with Store.from_url(f"sqlite:///{path}") as store:
        store.create_all()

    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert names == {"customers", "events", "decisions", "outcomes"}

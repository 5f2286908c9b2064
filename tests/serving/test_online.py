"""The online feature cache: coalesced computation, refresh after ingestion, merged blocks.

Each check compares cached rows with the offline definition (`build_features` on the store's
data at the row's own `as_of`): the cache may change how rows are computed and kept, never what
they hold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pandas.testing import assert_frame_equal
from scoring_world import World, as_, client_for, service

from features.engine import build_features
from serving.online import Entry, FeatureCache, signatures, utc_now
from serving.store import Store


@pytest.fixture
def client(world: World, world_store: dict[str, str], tmp_path: Path) -> Iterator[TestClient]:
    with client_for(world.settings(tmp_path, **world_store)) as test_client:
        yield test_client


def ids_of(world: World, start: int, stop: int) -> list[str]:
    return world.dataset.customers["customer_id"].astype(str).iloc[start:stop].tolist()


def assert_offline(store: Store, entry: Entry) -> None:
    """The cached row is the offline definition's row at its own `as_of`, on today's store."""
    row = entry.block.features.iloc[[entry.row]].reset_index(drop=True)
    entities = pd.DataFrame({"customer_id": [entry.customer_id], "cutoff": [entry.as_of]})
    offline = build_features(
        store.events_of(entry.customer_id), store.customers_frame([entry.customer_id]), entities
    )
    assert_frame_equal(row, offline)


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def current(cache: FeatureCache, customer_id: str) -> Entry | None:
    """The cached entry if it is current for the store's data now (computing nothing)."""
    signature = signatures(cache.store, [customer_id]).get(customer_id)
    return None if signature is None else cache.lookup(customer_id, signature)


def purchases(customer_id: str, n: int, tag: str) -> list[dict[str, object]]:
    now = utc_now()
    return [
        {
            "event_id": f"{tag}-{customer_id}-{i}",
            "customer_id": customer_id,
            "timestamp": (now - pd.Timedelta(hours=i + 1)).isoformat(),
            "event_type": "purchase",
            "amount": 50.0,
        }
        for i in range(n)
    ]


def test_compute_soon_serves_waiting_misses_in_one_run(client: TestClient, world: World) -> None:
    cache = service(client).cache
    gate, first_run_done = threading.Event(), threading.Event()
    on_block = cache.on_block

    def held(block: object) -> None:
        # The compute thread is held here after its first run, so the misses below queue up.
        first_run_done.set()
        gate.wait(30)
        if on_block is not None:
            on_block(block)  # type: ignore[arg-type]

    cache.on_block = held
    runs_before = cache.stats.runs
    first = ids_of(world, 0, 1)
    assert cache.compute_soon(first).keys() == {first[0]}
    assert first_run_done.wait(30)
    waiting = [ids_of(world, 10 + 3 * k, 13 + 3 * k) for k in range(5)]
    found: dict[int, dict[str, Entry]] = {}

    def ask(k: int) -> None:
        found[k] = cache.compute_soon(waiting[k])

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(waiting))]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: len(cache._wanted) == len(waiting), 10)
    cache.on_block = on_block
    gate.set()
    for thread in threads:
        thread.join(30)

    assert cache.stats.runs - runs_before == 2  # the first run, then one for all five requests
    blocks = {id(entry.block) for answer in found.values() for entry in answer.values()}
    assert len(blocks) == 1
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    for k, ids in enumerate(waiting):
        assert sorted(found[k]) == sorted(ids)
        for entry in found[k].values():
            assert_offline(store, entry)


def test_ingest_refreshes_cached_features_without_a_request(
    client: TestClient, world: World
) -> None:
    cache = service(client).cache
    customer_id = ids_of(world, 40, 41)[0]
    before = cache.entry(customer_id)
    assert before is not None
    refreshed_before = cache.stats.refreshed

    answer = client.post(
        "/v1/events", json={"events": purchases(customer_id, 3, "refresh")}, headers=as_("crm")
    )
    assert answer.json() == {"inserted": 3, "duplicates": 0}

    assert wait_for(lambda: current(cache, customer_id) is not None)
    after = current(cache, customer_id)
    assert after is not None and after.as_of > before.as_of
    assert cache.stats.refreshed > refreshed_before
    assert_offline(client.app.state.store, after)  # type: ignore[attr-defined]
    assert after.block.features["n_purchase_30d"].iloc[after.row] >= 3


class Runs:
    """Records the compute thread's DuckDB runs ("asked" or "refresh") and can hold the runs of
    some customers until released."""

    def __init__(self, cache: FeatureCache, refreshing: list[str], hold: set[str]) -> None:
        self.order: list[str] = []
        self.release = threading.Event()
        compute = cache.compute

        def recorded(ids: list[str], before: dict[str, object] | None = None) -> object:
            self.order.append("refresh" if set(ids) <= set(refreshing) else "asked")
            if set(ids) & hold:
                self.release.wait(30)
            return compute(ids, before)  # type: ignore[arg-type]

        cache.compute = recorded  # type: ignore[method-assign]


def post_purchases(client: TestClient, ids: list[str], tag: str) -> None:
    events = [event for customer_id in ids for event in purchases(customer_id, 1, tag)]
    answer = client.post("/v1/events", json={"events": events}, headers=as_("crm"))
    assert answer.json()["inserted"] == len(ids)


def hold_compute_thread(cache: FeatureCache, world: World) -> threading.Event:
    """Keep the compute thread inside a run until the returned event is set."""
    gate, held = threading.Event(), threading.Event()
    on_block = cache.on_block

    def hold(block: object) -> None:
        cache.on_block = on_block
        held.set()
        gate.wait(30)

    cache.on_block = hold
    cache.compute_soon(ids_of(world, 90, 91))
    assert held.wait(30)
    return gate


def ask_in_thread(
    cache: FeatureCache, ids: list[str]
) -> tuple[threading.Thread, dict[str, object]]:
    answer: dict[str, object] = {}

    def ask() -> None:
        try:
            answer.update(cache.compute_soon(ids, timeout=10))
        except Exception as exc:  # reported by the assertion on the answer
            answer["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    return thread, answer


def test_a_request_is_answered_before_the_refreshes_taken_along(
    client: TestClient, world: World
) -> None:
    cache = service(client).cache
    refreshing, asked = ids_of(world, 60, 66), ids_of(world, 70, 71)
    cache.compute(refreshing)
    gate = hold_compute_thread(cache, world)
    runs = Runs(cache, refreshing, hold=set(refreshing))  # refreshes wait until released
    post_purchases(client, refreshing, "r")  # new events: the cache marks them for a refresh
    thread, answer = ask_in_thread(cache, asked)
    assert wait_for(lambda: len(cache._wanted) == 1, 10)
    gate.set()  # the next run finds the request and the refreshes pending together

    thread.join(15)
    assert sorted(answer) == asked, answer  # answered before the refreshes were done
    assert wait_for(lambda: runs.order[:2] == ["asked", "refresh"], 10)  # then they started
    runs.release.set()
    assert wait_for(lambda: all(current(cache, i) is not None for i in refreshing))


def test_refreshes_give_way_to_a_request_between_chunks(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("serving.online.CHUNK", 2)
    cache = service(client).cache
    refreshing, asked = ids_of(world, 60, 66), ids_of(world, 70, 71)
    cache.compute(refreshing)
    runs = Runs(cache, refreshing, hold=set(refreshing))  # until released: the first chunk
    post_purchases(client, refreshing, "c")  # one run refreshes them, two at a time
    assert wait_for(lambda: runs.order == ["refresh"], 10)  # inside the first chunk
    thread, answer = ask_in_thread(cache, asked)
    assert wait_for(lambda: len(cache._wanted) == 1, 10)
    runs.release.set()

    thread.join(15)
    assert sorted(answer) == asked, answer
    assert wait_for(lambda: all(current(cache, i) is not None for i in refreshing))
    assert runs.order == ["refresh", "asked", "refresh", "refresh"]


def test_follow_refreshes_customers_another_worker_ingested(world: World, tmp_path: Path) -> None:
    # SQLite only: the follower reads the rowids of new events (PostgreSQL has none to read).
    with client_for(world.settings(tmp_path)) as client:
        cache = service(client).cache
        assert cache.follow(0.05)
        customer_id = ids_of(world, 50, 51)[0]
        assert cache.entry(customer_id) is not None
        # Another worker's write: straight into the store, never through this app.
        other = Store(client.app.state.settings.database_url)  # type: ignore[attr-defined]
        try:
            from features.contract import validate_events

            frame = pd.DataFrame(purchases(customer_id, 2, "follow"))
            checked = validate_events(frame, customer_ids=pd.Series([customer_id]))
            assert other.ingest_events(checked.valid).inserted == 2
        finally:
            other.close()

        assert wait_for(lambda: current(cache, customer_id) is not None)
        entry = current(cache, customer_id)
        assert entry is not None
        assert_offline(client.app.state.store, entry)  # type: ignore[attr-defined]


def test_compact_merges_small_blocks_keeping_rows_and_scores(
    client: TestClient, world: World
) -> None:
    scoring = service(client)
    cache = scoring.cache
    groups = [ids_of(world, 100 + 2 * k, 102 + 2 * k) for k in range(6)]
    for ids in groups:
        cache.compute(ids)
    everyone = [i for ids in groups for i in ids]
    scores_before = {
        i: client.get(f"/v1/customers/{i}/churn", headers=as_("crm")).json() for i in everyone
    }
    entries_before = {i: cache._entries[i] for i in everyone}
    blocks_before = len(cache.blocks())

    merged = cache.compact(fragmented=2)

    assert merged is not None
    assert len(cache.blocks()) < blocks_before
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    for customer_id in everyone:
        entry = cache._entries[customer_id]
        old = entries_before[customer_id]
        assert entry.block is merged
        assert (entry.as_of, entry.signature, entry.computed_at) == (
            old.as_of,
            old.signature,
            old.computed_at,
        )
        assert_offline(store, entry)
        again = client.get(f"/v1/customers/{customer_id}/churn", headers=as_("crm")).json()
        assert again == scores_before[customer_id]


def test_compute_soon_async_answers_every_waiting_coroutine(
    client: TestClient, world: World
) -> None:
    cache = service(client).cache
    ids = ids_of(world, 200, 208)

    async def ask_all() -> list[dict[str, Entry]]:
        return await asyncio.gather(*(cache.compute_soon_async([i]) for i in ids))

    answers = asyncio.run(ask_all())

    store: Store = client.app.state.store  # type: ignore[attr-defined]
    for customer_id, answer in zip(ids, answers, strict=True):
        assert list(answer) == [customer_id]
        assert_offline(store, answer[customer_id])

"""Online features from the store, with a per-customer cache that stays exact.

Computing `CHURN_FEATURES` for one customer with DuckDB costs ~150 ms, far over a scoring
budget of a few milliseconds, so features are cached per customer. A cached row is always the
offline definition evaluated at its own `as_of` (the time it was computed, returned with every
score), and it is served only while:

- the customer's data is unchanged: one indexed query per request reads the customer's row and
  event count (events are append-only, so any ingest changes the count), so an event ingested
  through *any* worker process invalidates the row for every worker;
- it is younger than `feature_max_age_seconds` (windowed features drift with the clock).

Otherwise the row is recomputed from the store as of now. A background job recomputes every
customer in chunks every `feature_refresh_seconds`, so requests rarely pay for a miss.

Data read for a row is bracketed by two signature reads; a row whose data changed in between is
served but not cached.

A DuckDB run costs about the same for one customer as for a few hundred (~100 ms, almost all of
it fixed cost), so rows are never computed one request at a time: a miss joins the next run of
the cache's compute thread, which takes every customer waiting at that moment (as the decision
log group-commits decisions). The same thread recomputes the customers whose events were just
ingested, by this worker (`refresh`) or by another one (`follow`: on SQLite it reads the ids of
events stored since its last look, a few times a second), so the next request finds them
cached. Each run makes a block; small and mostly replaced blocks are merged into one (`compact`)
so that the number of blocks, the memory they hold and the work a model swap does per block
stay bounded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd
import sqlalchemy as sa

from features.engine import DuckDBEngine, build_features
from features.panel import online_features
from serving.store import (
    Store,
    contact_count,
    customers,
    decisions,
    events,
    to_db_time,
)

log = logging.getLogger("retain.serving.online")

CHUNK: Final = 2_000  # customers per bulk read and per DuckDB run
_IN_CHUNK: Final = 5_000
FOLLOW_SECONDS: Final = 0.5  # how often a worker looks for events other workers stored
REFRESH_EVERY_SECONDS: Final = 1.0  # fewest seconds between two refresh runs
COMPUTE_TIMEOUT_SECONDS: Final = 30.0
# Merge blocks once this many are small (< SMALL_BLOCK rows) or mostly replaced.
FRAGMENTED_BLOCKS: Final = 16
SMALL_BLOCK: Final = 256

# (events stored for the customer, the customer's stored row): any ingest or upsert changes it.
Signature = tuple[int, tuple[Any, ...]]


def utc_now() -> pd.Timestamp:
    """Now as naive UTC to the microsecond, the form of event timestamps and cutoffs."""
    return pd.Timestamp.now("UTC").tz_convert(None).floor("us").as_unit("us")


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- store reads ---------------------------------------------------------------------------


def _signature_query() -> sa.Select[Any]:
    count = (
        sa.select(sa.func.count())
        .select_from(events)
        .where(events.c.customer_id == customers.c.customer_id)
        .scalar_subquery()
    )
    # Every column as text, so that a prepared read (driver values) and a SQLAlchemy read of
    # the same row give equal signatures.
    return sa.select(
        customers.c.customer_id,
        *(sa.cast(c, sa.String) for c in customers.c if c.name != "customer_id"),
        count.label("n_events"),
    )


_SIGNATURE_QUERY: Final = _signature_query()
# Built once: SQLAlchemy then reuses its compiled form instead of re-deriving a cache key.
_ONE_SIGNATURE: Final = _SIGNATURE_QUERY.where(customers.c.customer_id == sa.bindparam("id"))


def signatures(store: Store, ids: Sequence[str]) -> dict[str, Signature]:
    """The signature of each known customer among `ids` (unknown ids are left out)."""
    out: dict[str, Signature] = {}
    if len(ids) == 1:
        row = store.prepared(_ONE_SIGNATURE).first(id=ids[0])
        rows = [] if row is None else [row]
    else:
        with store.engine.connect() as conn:
            rows = [
                row
                for chunk in _chunks(list(dict.fromkeys(ids)), _IN_CHUNK)
                for row in conn.execute(_SIGNATURE_QUERY.where(customers.c.customer_id.in_(chunk)))
            ]
    for row in rows:
        values = tuple(row)
        out[str(values[0])] = (int(values[-1]), values[:-1])
    return out


def _recent_contacts_query() -> sa.Select[Any]:
    offers: sa.BindParameter[list[str]] = sa.bindparam("offers", expanding=True)
    decided = sa.select(decisions.c.offer_id.label("offer_id")).where(
        decisions.c.customer_id == sa.bindparam("customer"),
        decisions.c.offer_id.in_(offers),
        decisions.c.created_at >= sa.bindparam("since"),
    )
    sent = sa.select(events.c.offer_id.label("offer_id")).where(
        events.c.customer_id == sa.bindparam("customer"),
        events.c.event_type == "offer_sent",
        events.c.offer_id.in_(offers),
        events.c.timestamp >= sa.bindparam("since"),
    )
    both = sa.union_all(decided, sent).subquery()
    return sa.select(both.c.offer_id, sa.func.count()).group_by(both.c.offer_id)


# Built once (see _ONE_SIGNATURE): building it per request cost more than running it.
_RECENT_CONTACTS: Final = _recent_contacts_query()


def recent_contacts(
    store: Store, customer_id: str, offer_ids: Iterable[str], since: datetime
) -> dict[str, int]:
    """`Store.recent_offer_count` for several offers in one round trip (same counting rule:
    decisions that chose the offer plus `offer_sent` events naming it, at or after `since`)."""
    wanted = list(offer_ids)
    if not wanted:
        return {}
    parameters = {
        "customer": customer_id,
        "offers": wanted,
        "since": to_db_time(since, bound=True),
    }
    with store.engine.connect() as conn:
        counted = {str(offer): int(n) for offer, n in conn.execute(_RECENT_CONTACTS, parameters)}
    return {offer: counted.get(offer, 0) for offer in wanted}


@functools.lru_cache(maxsize=8)
def _signature_and_contacts_query(offer_ids: tuple[str, ...]) -> sa.Select[Any]:
    customer = customers.c.customer_id
    since: sa.BindParameter[Any] = sa.bindparam("since")
    return _ONE_SIGNATURE.add_columns(*(contact_count(customer, o, since) for o in offer_ids))


def signature_and_contacts(
    store: Store, customer_id: str, offer_ids: Sequence[str], since: datetime
) -> tuple[Signature | None, dict[str, int]]:
    """`signatures` of one customer and their `recent_contacts`, in one query (the two reads of
    every offer decision)."""
    query = _signature_and_contacts_query(tuple(offer_ids))
    row = store.prepared(query).first(id=customer_id, since=to_db_time(since, bound=True))
    if row is None:
        return None, {}
    values = tuple(row)
    width = len(values) - len(offer_ids)
    signature = (int(values[width - 1]), values[: width - 1])
    return signature, {o: int(n) for o, n in zip(offer_ids, values[width:], strict=True)}


def recent_contacts_frame(
    store: Store, offer_ids: Iterable[str], start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Contacts per customer (rows) and offer (columns) in [start, end), for batch caps."""
    wanted = list(offer_ids)
    lower, upper = start.ceil("us").to_pydatetime(), end.ceil("us").to_pydatetime()
    decided = sa.select(
        decisions.c.customer_id.label("customer_id"), decisions.c.offer_id.label("offer_id")
    ).where(
        decisions.c.offer_id.in_(wanted),
        decisions.c.created_at >= lower,
        decisions.c.created_at < upper,
    )
    sent = sa.select(
        events.c.customer_id.label("customer_id"), events.c.offer_id.label("offer_id")
    ).where(
        events.c.event_type == "offer_sent",
        events.c.offer_id.in_(wanted),
        events.c.timestamp >= lower,
        events.c.timestamp < upper,
    )
    both = sa.union_all(decided, sent).subquery()
    query = sa.select(both.c.customer_id, both.c.offer_id, sa.func.count()).group_by(
        both.c.customer_id, both.c.offer_id
    )
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    frame = pd.DataFrame(rows, columns=["customer_id", "offer_id", "n"])
    table = frame.pivot_table(
        index="customer_id", columns="offer_id", values="n", aggfunc="sum", fill_value=0
    )
    return table.reindex(columns=wanted, fill_value=0)


# --- cached feature rows -------------------------------------------------------------------


@dataclass(eq=False)
class FeatureBlock:
    """Features of some customers, and what models derived from them.

    Rows computed together share one `as_of`; a block merged from others (`FeatureCache.compact`)
    keeps each row's own, in the `cutoff` column (`as_of` is then the latest).

    `memo` holds per model-set results (see `serving.scoring.block_scores`); it is keyed by the
    set's generation so that a model swap never serves results of the previous models.
    """

    as_of: pd.Timestamp
    features: pd.DataFrame  # build_features output, RangeIndex, one row per customer
    customers: pd.DataFrame  # the customers' contract rows, same order
    computed_at: float = field(default_factory=time.monotonic)
    memo: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self.features)

    def cutoffs(self) -> np.ndarray:
        """The `as_of` of each row (datetime64[us])."""
        return self.features["cutoff"].to_numpy(dtype="datetime64[us]")


@dataclass(frozen=True)
class Entry:
    """One customer's cached row: `block.features.iloc[row]`, computed at `as_of`."""

    customer_id: str
    block: FeatureBlock
    row: int
    signature: Signature
    as_of: pd.Timestamp
    computed_at: float  # time.monotonic() when it was computed


@dataclass(eq=False)
class _Wanted:
    """Customers a request waits for, in the compute thread's next run."""

    ids: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    found: dict[str, Entry] = field(default_factory=dict)
    error: BaseException | None = None
    # Set for a caller awaiting on an event loop instead of blocking a thread.
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None

    def finish(self) -> None:
        if self.done.is_set():
            return
        self.done.set()
        if self.loop is not None and self.future is not None:
            try:
                self.loop.call_soon_threadsafe(_settle, self.future)
            except RuntimeError:  # its loop has closed: no one awaits the answer any more
                pass


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class ComputeStats:
    runs: int = 0  # DuckDB runs of the compute thread (one per chunk of customers)
    customers: int = 0  # rows they computed
    waited: int = 0  # customers requests waited for
    refreshed: int = 0  # customers recomputed because their events changed
    compactions: int = 0


@dataclass
class WarmStatus:
    running: bool = False
    customers_done: int = 0
    customers_total: int = 0
    rounds_completed: int = 0
    last_completed_at: pd.Timestamp | None = None
    reasons_done: int = 0


class FeatureCache:
    """Per-process cache of online feature rows (see the module docstring).

    Args:
        store: The online store.
        max_age_seconds: Oldest row served (when the customer's data is unchanged).
        engine: DuckDB engine for feature runs (one thread by default: serving shares the cores).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_age_seconds: float,
        engine: DuckDBEngine | None = None,
    ) -> None:
        self.store = store
        self.max_age_seconds = max_age_seconds
        self.engine = engine or DuckDBEngine(threads=1, plan="by_cutoff")
        self._entries: dict[str, Entry] = {}
        self._entries_lock = threading.Lock()  # writers only; lookups read the dict as it is
        self.status = WarmStatus()
        self.stats = ComputeStats()
        self._stop = threading.Event()
        self._warmer: threading.Thread | None = None
        # The compute thread and what it has to do next.
        self._wake = threading.Condition()
        self._wanted: list[_Wanted] = []
        self._refresh: dict[str, None] = {}
        self._computer: threading.Thread | None = None
        self._follow_seconds = 0.0
        self._marker: int | None = None
        # Set by the service: precompute a new block's model results; carry them into a merge.
        self.on_block: Callable[[FeatureBlock], None] | None = None
        self.on_compact: Callable[[FeatureBlock, list[tuple[FeatureBlock, int]]], None] | None = (
            None
        )

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, ids: Sequence[str]) -> dict[str, Entry | None]:
        """A current entry for each id (None for a customer the store does not hold)."""
        found = signatures(self.store, ids)
        out: dict[str, Entry | None] = {}
        stale: list[str] = []
        for customer_id in ids:
            signature = found.get(customer_id)
            entry = None if signature is None else self.lookup(customer_id, signature)
            out[customer_id] = entry
            if signature is not None and entry is None:
                stale.append(customer_id)
        if stale:
            out.update(self.compute_soon(list(dict.fromkeys(stale))))
        return out

    def entry(self, customer_id: str) -> Entry | None:
        return self.entries([customer_id])[customer_id]

    def peek(self, customer_id: str) -> tuple[bool, Entry | None]:
        """(whether the store holds the customer, their current cached entry if any), computing
        nothing: one signature read."""
        signature = signatures(self.store, [customer_id]).get(customer_id)
        if signature is None:
            return False, None
        return True, self.lookup(customer_id, signature)

    def lookup(self, customer_id: str, signature: Signature) -> Entry | None:
        """The cached entry, if it is current for a signature just read."""
        entry = self._entries.get(customer_id)
        if (
            entry is not None
            and entry.signature == signature
            and time.monotonic() - entry.computed_at < self.max_age_seconds
        ):
            return entry
        return None

    def compute(
        self, ids: Sequence[str], before: dict[str, Signature] | None = None
    ) -> dict[str, Entry]:
        """Compute the rows of `ids` from the store as of now, and cache the consistent ones."""
        if before is None:
            before = signatures(self.store, ids)
        ids = [i for i in ids if i in before]
        if not ids:
            return {}
        if len(ids) == 1:
            event_rows = self.store.events_of(ids[0])
            customer_rows = self.store.customers_frame(ids)
            as_of = utc_now()
            features = online_features(event_rows, customer_rows, as_of, engine=self.engine)
        else:
            event_rows = self.store.events_frame(ids)
            customer_rows = self.store.customers_frame(ids)
            as_of = utc_now()
            entities = pd.DataFrame({"customer_id": customer_rows["customer_id"], "cutoff": as_of})
            features = build_features(event_rows, customer_rows, entities, engine=self.engine)
        after = signatures(self.store, ids)
        block = FeatureBlock(
            as_of=as_of,
            features=features.reset_index(drop=True),
            customers=customer_rows.reset_index(drop=True),
        )
        out: dict[str, Entry] = {}
        for row, customer_id in enumerate(block.features["customer_id"].tolist()):
            signature = after.get(customer_id)
            if signature is None:
                continue
            out[customer_id] = Entry(customer_id, block, row, signature, as_of, block.computed_at)
        with self._entries_lock:
            for customer_id, entry in out.items():
                if before.get(customer_id) == entry.signature:
                    self._entries[customer_id] = entry
        return out

    # --- the compute thread ----------------------------------------------------------------

    def compute_soon(
        self, ids: Sequence[str], timeout: float = COMPUTE_TIMEOUT_SECONDS
    ) -> dict[str, Entry]:
        """`compute`, in the compute thread's next run together with every other customer
        waiting then; returns once that run has computed them."""
        if self._stop.is_set():
            return self.compute(ids)
        wanted = self._enqueue(_Wanted(list(ids)))
        if not wanted.done.wait(timeout):
            raise TimeoutError(f"online features were not computed within {timeout} s")
        if wanted.error is not None:
            raise wanted.error
        return wanted.found

    async def compute_soon_async(
        self, ids: Sequence[str], timeout: float = COMPUTE_TIMEOUT_SECONDS
    ) -> dict[str, Entry]:
        """`compute_soon` for a coroutine: awaits the run without holding a thread."""
        if self._stop.is_set():
            return await asyncio.to_thread(self.compute, ids)
        loop = asyncio.get_running_loop()
        wanted = self._enqueue(_Wanted(list(ids), loop=loop, future=loop.create_future()))
        assert wanted.future is not None
        try:
            await asyncio.wait_for(asyncio.shield(wanted.future), timeout)
        except TimeoutError:
            raise TimeoutError(f"online features were not computed within {timeout} s") from None
        if wanted.error is not None:
            raise wanted.error
        return wanted.found

    def _enqueue(self, wanted: _Wanted) -> _Wanted:
        with self._wake:
            self._ensure_computer()
            self._wanted.append(wanted)
            self._wake.notify()
        return wanted

    def refresh(self, ids: Iterable[str]) -> None:
        """Recompute these customers soon (their data changed), without waiting; those not
        cached are left alone."""
        with self._wake:
            for customer_id in ids:
                if customer_id in self._entries:
                    self._refresh[customer_id] = None
            if self._refresh:
                self._ensure_computer()
                self._wake.notify()

    def follow(self, interval_seconds: float = FOLLOW_SECONDS) -> bool:
        """Refresh the customers whose events any worker stores, looking every
        `interval_seconds`; False where the store cannot tell (PostgreSQL)."""
        found = self.store.events_added_after(None)
        if found is None:
            return False
        with self._wake:
            self._marker = found[0]
            self._follow_seconds = interval_seconds
            self._ensure_computer()
            self._wake.notify()
        return True

    def _ensure_computer(self) -> None:
        # Called with self._wake held.
        if self._computer is None and not self._stop.is_set():
            self._computer = threading.Thread(
                target=self._compute_loop, name="retain-feature-compute", daemon=True
            )
            self._computer.start()

    def _compute_loop(self) -> None:
        # Requests are served at once; refreshes (no one waiting) at most every
        # REFRESH_EVERY_SECONDS, so that a run's fixed cost is paid for many customers, however
        # fast events arrive. A request's run takes the pending refreshes along.
        next_look = time.monotonic()
        refreshed_at = -math.inf
        while True:
            if self._follow_seconds and time.monotonic() >= next_look:
                next_look = time.monotonic() + self._follow_seconds
                changed = self._changed_customers()
                with self._wake:
                    self._refresh.update(dict.fromkeys(changed))
            with self._wake:
                while True:
                    if self._stop.is_set():
                        for item in self._wanted:
                            item.error = RuntimeError("the service is stopping")
                            item.finish()
                        self._wanted = []
                        return
                    now = time.monotonic()
                    refresh_due = (
                        bool(self._refresh) and now >= refreshed_at + REFRESH_EVERY_SECONDS
                    )
                    look_due = bool(self._follow_seconds) and now >= next_look
                    if self._wanted or refresh_due or look_due:
                        break
                    deadlines = [next_look] if self._follow_seconds else []
                    if self._refresh:
                        deadlines.append(refreshed_at + REFRESH_EVERY_SECONDS)
                    self._wake.wait(max(0.0, min(deadlines) - now) if deadlines else None)
                wanted, self._wanted = self._wanted, []
                refresh: list[str] = []
                if wanted or refresh_due:
                    refresh, self._refresh = list(self._refresh), {}
            if not (wanted or refresh):
                continue  # time to look for other workers' events
            if refresh:
                refreshed_at = time.monotonic()
            try:
                self._run(wanted, refresh)
            except Exception as exc:  # every waiter learns why, none hangs
                log.exception("computing online features failed")
                for item in wanted:
                    item.error = exc
            finally:
                for item in wanted:
                    item.finish()

    def _changed_customers(self) -> list[str]:
        try:
            found = self.store.events_added_after(self._marker)
        except Exception:
            log.exception("reading the ids of new events failed; will retry")
            return []
        if found is None:
            return []
        self._marker, ids = found
        return [i for i in ids if i in self._entries]

    def _run(self, wanted: list[_Wanted], refresh: list[str]) -> None:
        # Requests are answered from a run of their own customers; refreshes (no one waits for
        # them) follow a chunk at a time and give way to requests that arrive meanwhile. Taken
        # in one run, a request for one customer waited for thousands of others' refreshes.
        asked = list(dict.fromkeys(i for item in wanted for i in item.ids))
        computed = self._compute_chunks(asked)
        self.stats.waited += len(asked)
        for item in wanted:
            item.found = {i: computed[i] for i in item.ids if i in computed}
            item.finish()  # answer the requests before the precomputation below
        self._precompute(computed)
        done = set(asked)
        try:
            self._refresh_chunks([i for i in refresh if i not in done])  # refresh: distinct ids
        except Exception:  # the requests have their answers; a stale row is recomputed when
            log.exception("refreshing online features failed")  # asked (signature check)
        self.compact()

    def _refresh_chunks(self, ids: list[str]) -> None:
        while ids:
            with self._wake:
                if self._wanted:  # serve them first; the rest is refreshed in their run
                    self._refresh.update(dict.fromkeys(ids))
                    return
            part, ids = ids[:CHUNK], ids[CHUNK:]
            refreshed = self._compute_chunks(part, stale_only=True)
            self.stats.refreshed += len(refreshed)
            self._precompute(refreshed)

    def _compute_chunks(self, ids: list[str], *, stale_only: bool = False) -> dict[str, Entry]:
        """`compute` these customers, CHUNK at a time; with `stale_only`, skip those whose
        cached row is still current (a request brought them up to date)."""
        if not ids:
            return {}
        before = signatures(self.store, ids)
        todo = [i for i in ids if i in before]
        if stale_only:
            todo = [i for i in todo if self.lookup(i, before[i]) is None]
        computed: dict[str, Entry] = {}
        for part in _chunks(todo, CHUNK):
            computed.update(self.compute(list(part), before))
            self.stats.runs += 1
        self.stats.customers += len(computed)
        return computed

    def _precompute(self, computed: Mapping[str, Entry]) -> None:
        if self.on_block is None:
            return
        for block in {id(e.block): e.block for e in computed.values()}.values():
            try:
                self.on_block(block)
            except Exception:
                log.exception("precomputing a block failed")

    def compact(self, *, fragmented: int = FRAGMENTED_BLOCKS) -> FeatureBlock | None:
        """Merge the live rows of small or mostly replaced blocks into one block, once there are
        `fragmented` of them (each row keeps its `as_of`, signature and age)."""
        live: dict[int, list[Entry]] = {}
        blocks: dict[int, FeatureBlock] = {}
        for entry in list(self._entries.values()):
            live.setdefault(id(entry.block), []).append(entry)
            blocks[id(entry.block)] = entry.block
        small = [
            key
            for key, block in blocks.items()
            if len(block) < SMALL_BLOCK or 2 * len(live[key]) < len(block)
        ]
        if len(small) < fragmented:
            return None
        moved = [entry for key in small for entry in live[key]]
        features = pd.concat(
            [blocks[k].features.iloc[[e.row for e in live[k]]] for k in small], ignore_index=True
        )
        customer_rows = pd.concat(
            [blocks[k].customers.iloc[[e.row for e in live[k]]] for k in small], ignore_index=True
        )
        merged = FeatureBlock(
            as_of=max(e.as_of for e in moved), features=features, customers=customer_rows
        )
        if self.on_compact is not None:
            try:
                self.on_compact(merged, [(e.block, e.row) for e in moved])
            except Exception:
                log.exception("carrying model results into a merged block failed")
        with self._entries_lock:
            for row, entry in enumerate(moved):
                if self._entries.get(entry.customer_id) is entry:
                    self._entries[entry.customer_id] = replace(entry, block=merged, row=row)
        self.stats.compactions += 1
        return merged

    def blocks(self) -> list[FeatureBlock]:
        """The distinct blocks the cache currently refers to."""
        seen: dict[int, FeatureBlock] = {}
        for entry in list(self._entries.values()):
            seen.setdefault(id(entry.block), entry.block)
        return list(seen.values())

    def clear(self) -> None:
        with self._entries_lock:
            self._entries = {}

    # --- background refresh ----------------------------------------------------------------

    def warm(
        self,
        *,
        chunk: int = CHUNK,
        after_block: Callable[[FeatureBlock], None] | None = None,
        after_round: Callable[[], None] | None = None,
    ) -> None:
        """Recompute every customer's row, chunk by chunk (stops early when asked to)."""
        ids = self.store.customer_ids()
        self.status.running = True
        self.status.customers_total = len(ids)
        self.status.customers_done = 0
        try:
            for part in _chunks(ids, chunk):
                if self._stop.is_set():
                    return
                computed = self.compute(list(part))
                self.status.customers_done += len(part)
                if after_block is not None and computed:
                    after_block(next(iter(computed.values())).block)
            self.status.rounds_completed += 1
            self.status.last_completed_at = utc_now()
            if after_round is not None:
                after_round()
        finally:
            self.status.running = False

    def start_warming(
        self,
        refresh_seconds: float,
        *,
        after_block: Callable[[FeatureBlock], None] | None = None,
        after_round: Callable[[], None] | None = None,
    ) -> None:
        """Warm now, then every `refresh_seconds`, in a daemon thread (0: never)."""
        if refresh_seconds <= 0 or self._warmer is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.warm(after_block=after_block, after_round=after_round)
                except Exception:
                    log.exception("feature warm-up failed; will retry")
                wait = max(1.0, refresh_seconds - (time.monotonic() - started))
                if self._stop.wait(wait):
                    return

        self._warmer = threading.Thread(target=run, name="retain-feature-warm", daemon=True)
        self._warmer.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._computer is not None:
            self._computer.join(timeout=30)
            self._computer = None
        if self._warmer is not None:
            self._warmer.join(timeout=30)
            self._warmer = None


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns of a `build_features` frame (its keys left out)."""
    return [c for c in frame.columns if c not in ("customer_id", "cutoff")]


__all__ = [
    "Entry",
    "FeatureBlock",
    "FeatureCache",
    "recent_contacts",
    "recent_contacts_frame",
    "signatures",
    "utc_now",
]

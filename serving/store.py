"""The online store: customers, events, decisions and their outcomes (SQLite or PostgreSQL).

SQLAlchemy Core on both backends, with the same schema and the same semantics:

- every timestamp is stored as naive UTC, exact to the microsecond;
- events are idempotent by `event_id` (`INSERT … ON CONFLICT DO NOTHING`), outcomes by
  (decision_id, kind);
- a write method returns only after its transaction has committed, and a commit is durable:
  SQLite runs in WAL mode with `synchronous=FULL`, PostgreSQL with `synchronous_commit=on`.

See docs/store.md for the schema and the reasoning behind these guarantees.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.sql.compiler import SQLCompiler

from features.contract import CUSTOMER_COLUMNS, EVENT_COLUMNS
from features.io import Dataset

log = logging.getLogger("retain.serving.store")

OUTCOME_KINDS: Final = ("redeemed", "declined", "retained", "churned")
DEFAULT_CHUNK_SIZE: Final = 10_000
# Bound parameters per `IN (…)` query; below SQLite's 32766 and PostgreSQL's 65535.
_IN_CHUNK: Final = 5_000
_WRITE: Final = "retain_write"

# --- schema ------------------------------------------------------------------------------------

metadata = sa.MetaData()
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", sa.String, primary_key=True),
    sa.Column("signup_date", sa.DateTime, nullable=False),
    sa.Column("country", sa.String),
    sa.Column("language", sa.String, nullable=False),
    sa.Column("segment", sa.String),
    sa.Column("loyalty_member", sa.Boolean, nullable=False),
    sa.Column("marketing_consent", sa.Boolean, nullable=False),
    # Extra columns of the customers file (static attributes) as one JSON object.
    sa.Column("attributes", _JSON, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String, primary_key=True),
    sa.Column("customer_id", sa.String, sa.ForeignKey("customers.customer_id"), nullable=False),
    sa.Column("timestamp", sa.DateTime, nullable=False),
    sa.Column("event_type", sa.String, nullable=False),
    sa.Column("amount", sa.Double),
    sa.Column("channel", sa.String),
    sa.Column("offer_id", sa.String),
    sa.Column("propensity", sa.Double),
    sa.Column("score", sa.Double),
    sa.Index("ix_events_customer_timestamp", "customer_id", "timestamp"),
)

# No foreign key to customers: a decision is a log of what the service did and must be kept
# even if it was made for a customer the store has not (yet) seen.
decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("decision_id", sa.String, primary_key=True),
    sa.Column("customer_id", sa.String, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("offer_id", sa.String, nullable=False),
    sa.Column("propensity", sa.Double),
    sa.Column("expected_value", sa.Double),
    sa.Column("model_version", sa.String, nullable=False),
    sa.Column("context", _JSON, nullable=False),
    sa.Column("candidates", _JSON, nullable=False),
    sa.Index("ix_decisions_customer_created", "customer_id", "created_at"),
)

outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("decision_id", sa.String, sa.ForeignKey("decisions.decision_id"), primary_key=True),
    sa.Column("kind", sa.String, primary_key=True),
    sa.Column("value", sa.Double),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

_EVENT_DTYPES: Final = {
    "event_id": "str",
    "customer_id": "str",
    "timestamp": "datetime64[us]",
    "event_type": "str",
    "amount": "float64",
    "channel": "str",
    "offer_id": "str",
    "propensity": "float64",
    "score": "float64",
}
_CUSTOMER_DTYPES: Final = {
    "customer_id": "str",
    "signup_date": "datetime64[us]",
    "country": "str",
    "language": "str",
    "segment": "str",
    "loyalty_member": "bool",
    "marketing_consent": "bool",
}
_EVENT_KEYS: Final = ("event_id", "customer_id", "timestamp", "event_type")  # NOT NULL
assert tuple(_EVENT_DTYPES) == EVENT_COLUMNS and tuple(_CUSTOMER_DTYPES) == CUSTOMER_COLUMNS

# --- results and errors ------------------------------------------------------------------------


class StoreError(Exception):
    """Base class of the store's own errors."""


class UnknownDecision(StoreError, LookupError):
    """An outcome was recorded for a decision the store does not hold."""

    def __init__(self, decision_id: str) -> None:
        self.decision_id = decision_id
        super().__init__(f"unknown decision {decision_id!r}: record the decision first")


class DuplicateDecision(StoreError):
    """A decision id was recorded twice; decisions are never overwritten."""

    def __init__(self, decision_id: str) -> None:
        self.decision_id = decision_id
        super().__init__(f"decision {decision_id!r} is already recorded")


class UnknownCustomers(StoreError, LookupError):
    """Events name customers the store does not hold; nothing of the batch was stored."""

    def __init__(self, customer_ids: Sequence[str]) -> None:
        self.customer_ids = list(customer_ids)
        shown = ", ".join(self.customer_ids[:5])
        more = len(self.customer_ids) - 5
        super().__init__(
            f"events of unknown customers: {shown}" + (f" (and {more} more)" if more > 0 else "")
        )


@dataclass(frozen=True)
class IngestResult:
    """Events newly stored, and events skipped because their `event_id` was already stored."""

    inserted: int
    duplicates: int

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(self.inserted + other.inserted, self.duplicates + other.duplicates)


@dataclass(frozen=True)
class LoadResult:
    """What `Store.load_dataset` wrote."""

    customers: int
    events: IngestResult


@dataclass(frozen=True)
class Decision:
    """One logged decision: the action chosen for a customer, and what it was chosen from."""

    decision_id: str
    customer_id: str
    created_at: datetime
    offer_id: str
    propensity: float | None
    expected_value: float | None
    model_version: str
    context: dict[str, Any]
    candidates: list[dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What became of a decision (`redeemed`, `declined`, `retained`, `churned`)."""

    decision_id: str
    kind: str
    value: float | None
    recorded_at: datetime


# --- the store ---------------------------------------------------------------------------------


class Store:
    """The online store behind the HTTP service.

    `Store(url)` connects lazily; call `create_all()` once to create missing tables. URLs:
    `sqlite:///path/to/retain.db` (the default, see `Settings.database_url`) or
    `postgresql://user@host:5432/db` (`postgresql+psycopg://` is implied).
    """

    def __init__(
        self, url: str | URL, *, echo: bool = False, background_checkpoints: bool = False
    ) -> None:
        self.engine: Engine = _create_engine(_normalise_url(url), echo=echo)
        self._postgres = self.engine.dialect.name == "postgresql"
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._prepared: dict[int, Prepared] = {}
        self._checkpointer: _Checkpointer | None = None
        if background_checkpoints and self.engine.dialect.name == "sqlite":
            self._checkpointer = _Checkpointer(self.engine)

    def prepared(self, statement: sa.ClauseElement) -> Prepared:
        """`statement` compiled once for this store (see `Prepared`); keep `statement` alive."""
        prepared = self._prepared.get(id(statement))
        if prepared is None or prepared.statement is not statement:
            prepared = self._prepared[id(statement)] = Prepared(self.engine, statement)
        return prepared

    @classmethod
    def from_url(cls, url: str | URL, *, echo: bool = False) -> Store:
        return cls(url, echo=echo)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def create_all(self) -> None:
        """Create the tables and indexes that do not exist yet (existing ones are left alone)."""
        metadata.create_all(self.engine)

    def close(self) -> None:
        """Close every pooled connection."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()

    # --- customers ----------------------------------------------------------------------------

    def upsert_customers(self, frame: pd.DataFrame) -> int:
        """Insert or replace customers (a `validate_customers` frame); returns the rows written.

        A stored customer is replaced whole, extra attributes included, in one transaction.
        """
        with self._write() as conn:
            return self._upsert_customers(conn, frame)

    def customers_frame(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Customers as `validate_customers` types them, attributes as extra columns.

        Rows follow the order of `ids` (unknown ids are left out); all customers, ordered by id,
        when `ids` is None.
        """
        columns = [customers.c[name] for name in CUSTOMER_COLUMNS] + [customers.c.attributes]
        query = sa.select(*columns)
        with self._read() as conn:
            if ids is None:
                rows = list(conn.execute(query.order_by(customers.c.customer_id)))
            else:
                wanted = _distinct_ids(ids)
                rows = [
                    row
                    for chunk in _chunked(wanted, _IN_CHUNK)
                    for row in conn.execute(query.where(customers.c.customer_id.in_(chunk)))
                ]
                position = {customer_id: i for i, customer_id in enumerate(wanted)}
                rows.sort(key=lambda row: position[row.customer_id])
        base = _frame([tuple(row)[:-1] for row in rows], _CUSTOMER_DTYPES)
        attributes = pd.DataFrame([row.attributes for row in rows], index=base.index)
        return pd.concat([base, attributes], axis=1)

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """One customer as a flat dict (contract fields and attributes; missing values None)."""
        frame = self.customers_frame([customer_id])
        if frame.empty:
            return None
        record = frame.to_dict("records")[0]
        return {str(key): None if _is_missing(value) else value for key, value in record.items()}

    def customer_ids(self) -> list[str]:
        """Every stored customer id, in order."""
        query = sa.select(customers.c.customer_id).order_by(customers.c.customer_id)
        with self._read() as conn:
            return [str(i) for i in conn.execute(query).scalars()]

    def known_customer_ids(self, ids: Iterable[str]) -> set[str]:
        """The subset of `ids` that the store holds."""
        found: set[str] = set()
        with self._read() as conn:
            for chunk in _chunked(_distinct_ids(ids), _IN_CHUNK):
                query = sa.select(customers.c.customer_id).where(customers.c.customer_id.in_(chunk))
                found.update(conn.execute(query).scalars())
        return found

    # --- events -------------------------------------------------------------------------------

    def ingest_events(self, frame: pd.DataFrame) -> IngestResult:
        """Store a batch of events (a `validate_events` frame) in one transaction.

        Idempotent by `event_id`: an id already stored (or repeated within the batch) is skipped
        and counted as a duplicate; the stored row is not changed. Returns after the commit.

        Raises:
            ValueError: a contract column, or a required value, is missing.
            UnknownCustomers: an event names a customer the store does not hold (nothing of the
                batch is stored).
        """
        _check_events(frame)
        if frame.empty:
            return IngestResult(0, 0)
        try:
            with self._write() as conn:
                return self._insert_events(conn, frame)
        except sa.exc.IntegrityError as exc:
            self._raise_if_unknown_customers(exc, frame["customer_id"])
            raise

    def events_of(
        self, customer_id: str, before: datetime | pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """A customer's events strictly before `before` (all when None), in contract columns
        and dtypes (timestamps naive UTC, `datetime64[us]`), ordered by timestamp then id.

        An aware `before` is converted to UTC; a naive one is taken as UTC.
        """
        query = sa.select(*[events.c[name] for name in EVENT_COLUMNS]).where(
            events.c.customer_id == customer_id
        )
        if before is not None:
            query = query.where(events.c.timestamp < to_db_time(before, bound=True))
        query = query.order_by(events.c.timestamp, events.c.event_id)
        with self._read() as conn:
            rows = [tuple(row) for row in conn.execute(query)]
        return _frame(rows, _EVENT_DTYPES)

    def events_frame(
        self, ids: Iterable[str] | None = None, columns: Sequence[str] = EVENT_COLUMNS
    ) -> pd.DataFrame:
        """`columns` of the events of many customers (all when `ids` is None), typed as
        `events_of` types them, ordered by customer, timestamp and id."""
        selected = [events.c[name] for name in columns]
        order = (events.c.customer_id, events.c.timestamp, events.c.event_id)
        with self._read() as conn:
            if ids is None:
                rows = [tuple(r) for r in conn.execute(sa.select(*selected).order_by(*order))]
            else:
                rows = [
                    tuple(r)
                    for chunk in _chunked(_distinct_ids(ids), _IN_CHUNK)
                    for r in conn.execute(
                        sa.select(*selected).where(events.c.customer_id.in_(chunk)).order_by(*order)
                    )
                ]
        return _frame(rows, {name: _EVENT_DTYPES[name] for name in columns})

    def events_added_after(
        self, marker: int | None, limit: int = 10_000
    ) -> tuple[int, list[str]] | None:
        """Customers of the events stored after `marker` (None: none yet, only the marker), and
        the new marker: how serving's feature caches in every worker learn which customers
        changed. SQLite only (its rowid grows with each insert); None on PostgreSQL."""
        if self._postgres:
            return None
        with self._read() as conn:
            if marker is None:
                last = conn.execute(sa.text("SELECT max(rowid) FROM events")).scalar()
                return int(last or 0), []
            rows = conn.execute(
                sa.text(
                    "SELECT rowid, customer_id FROM events WHERE rowid > :marker "
                    "ORDER BY rowid LIMIT :limit"
                ),
                {"marker": marker, "limit": limit},
            ).all()
        if not rows:
            return marker, []
        return int(rows[-1][0]), list(dict.fromkeys(str(r[1]) for r in rows))

    def load_dataset(self, dataset: Dataset, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> LoadResult:
        """Bulk-load a validated data set (customers, then events) in chunks of `chunk_size`.

        The whole load is one transaction: if any chunk fails, nothing of the data set is
        stored. Re-loading the same data set replaces the customers and skips every event.
        """
        _check_events(dataset.events)
        try:
            with self._write() as conn:
                written = sum(
                    self._upsert_customers(conn, chunk)
                    for chunk in _frame_chunks(dataset.customers, chunk_size)
                )
                ingested = IngestResult(0, 0)
                for chunk in _frame_chunks(dataset.events, chunk_size):
                    ingested += self._insert_events(conn, chunk)
        except sa.exc.IntegrityError as exc:
            self._raise_if_unknown_customers(
                exc, dataset.events["customer_id"], also_known=dataset.customers["customer_id"]
            )
            raise
        return LoadResult(customers=written, events=ingested)

    # --- decisions and outcomes ---------------------------------------------------------------

    def record_decision(
        self,
        *,
        customer_id: str,
        offer_id: str,
        model_version: str,
        propensity: float | None = None,
        expected_value: float | None = None,
        context: Mapping[str, Any] | None = None,
        candidates: Sequence[Mapping[str, Any]] = (),
        decision_id: str | None = None,
        created_at: datetime | pd.Timestamp | None = None,
    ) -> Decision:
        """Log a decision: the chosen `offer_id` (`none` for do-nothing), the probability with
        which the policy chose it, and the scored candidates. Returns it as stored.

        Raises:
            ValueError: `propensity` is not in (0, 1].
            DuplicateDecision: `decision_id` is already recorded.
        """
        decision = new_decision(
            customer_id=customer_id,
            offer_id=offer_id,
            model_version=model_version,
            propensity=propensity,
            expected_value=expected_value,
            context=context or {},
            candidates=candidates,
            created_at=created_at if created_at is not None else _utc_now(),
            decision_id=decision_id,
        )
        statement = (
            self._insert(decisions)
            .values(**vars(decision))
            .on_conflict_do_nothing(index_elements=["decision_id"])
            .returning(decisions.c.decision_id)
        )
        with self._write() as conn:
            if conn.execute(statement).first() is None:
                raise DuplicateDecision(decision.decision_id)
        return decision

    def decision(self, decision_id: str) -> Decision | None:
        """The decision logged under `decision_id`, if any."""
        query = sa.select(decisions).where(decisions.c.decision_id == decision_id)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else Decision(**row._asdict())

    def record_outcome(
        self,
        decision_id: str,
        kind: str,
        value: float | None = None,
        *,
        recorded_at: datetime | pd.Timestamp | None = None,
    ) -> bool:
        """Record what became of a decision; False if this kind was already recorded for it
        (the first record stands).

        Raises:
            ValueError: `kind` is not one of `OUTCOME_KINDS`.
            UnknownDecision: no decision `decision_id` is stored.
        """
        if kind not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome kind {kind!r}: expected one of {OUTCOME_KINDS}")
        statement = (
            self._insert(outcomes)
            .values(
                decision_id=decision_id,
                kind=kind,
                value=_float_or_none(value),
                recorded_at=to_db_time(recorded_at if recorded_at is not None else _utc_now()),
            )
            .on_conflict_do_nothing(index_elements=["decision_id", "kind"])
            .returning(outcomes.c.kind)
        )
        exists = sa.select(decisions.c.decision_id).where(decisions.c.decision_id == decision_id)
        with self._write() as conn:
            if conn.execute(exists).first() is None:
                raise UnknownDecision(decision_id)
            return conn.execute(statement).first() is not None

    def outcomes_of(self, decision_id: str) -> list[Outcome]:
        """The outcomes recorded for a decision, oldest first."""
        query = (
            sa.select(outcomes)
            .where(outcomes.c.decision_id == decision_id)
            .order_by(outcomes.c.recorded_at, outcomes.c.kind)
        )
        with self._read() as conn:
            return [Outcome(**row._asdict()) for row in conn.execute(query)]

    def recent_offer_count(
        self, customer_id: str, offer_id: str, since: datetime | pd.Timestamp
    ) -> int:
        """How often `offer_id` went to a customer at or after `since`, for contact caps.

        Counts decisions that chose the offer and `offer_sent` events naming it. The two are not
        linked, so an offer that was both decided here and reported back as an event counts
        twice: the cap errs on the side of contacting less.
        """
        start = to_db_time(since, bound=True)
        with self._read() as conn:
            total = conn.execute(
                sa.select(contact_count(customer_id, offer_id, start))
            ).scalar_one()
        return int(total)

    # --- internals ----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._postgres:
            with self._writer.begin() as conn:
                yield conn
            return
        # SQLite has one writer at a time. Threads of this process queue here, holding no pooled
        # connection, instead of each holding one while SQLite makes it wait: under load those
        # waits took every connection, and a read on the event loop then blocked the worker.
        with write_turn(self.engine.url), self._writer.begin() as conn:
            yield conn

    def _read(self) -> AbstractContextManager[Connection]:
        return self.engine.connect()

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        return postgresql.insert(table) if self._postgres else sqlite.insert(table)

    def _bulk_insert(
        self, table: sa.Table, values: Mapping[str, list[Any]]
    ) -> tuple[sqlite.Insert | postgresql.Insert, Any]:
        """An INSERT of many rows, and its parameters, given column-wise; add ON CONFLICT."""
        names = list(values)
        if not self._postgres:
            # executemany: SQLAlchemy batches the rows into multi-row INSERTs.
            rows = zip(*values.values(), strict=True)
            return sqlite.insert(table), [dict(zip(names, row, strict=True)) for row in rows]
        # One statement with one array per column, `INSERT … SELECT … FROM unnest(…)`: psycopg
        # parses a multi-row VALUES statement anew for each page, about 5x slower at 10k rows.
        arrays = [
            sa.bindparam(name, type_=postgresql.ARRAY(_array_item_type(table.c[name])))
            for name in names
        ]
        batch = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="batch")
        selected = [
            sa.cast(batch.c[name], postgresql.JSONB) if _is_json(table.c[name]) else batch.c[name]
            for name in names
        ]
        parameters = {
            name: [_dumps(item) for item in column] if _is_json(table.c[name]) else column
            for name, column in values.items()
        }
        return postgresql.insert(table).from_select(names, sa.select(*selected)), parameters

    def _insert_events(self, conn: Connection, frame: pd.DataFrame) -> IngestResult:
        insert, parameters = self._bulk_insert(events, _column_values(frame, EVENT_COLUMNS))
        # RETURNING yields only the rows actually inserted, not those skipped as duplicates.
        statement = insert.on_conflict_do_nothing(index_elements=["event_id"]).returning(
            events.c.event_id
        )
        inserted = len(conn.execute(statement, parameters).all())
        return IngestResult(inserted, len(frame) - inserted)

    def _upsert_customers(self, conn: Connection, frame: pd.DataFrame) -> int:
        _require_columns(frame, CUSTOMER_COLUMNS, "customers")
        if frame.empty:
            return 0
        repeated = frame["customer_id"][frame["customer_id"].duplicated()]
        if not repeated.empty:
            raise ValueError(f"customer_id repeated within the batch: {repeated.iloc[0]}")
        values = _column_values(frame, CUSTOMER_COLUMNS)
        extras = {
            str(column): _python_values(frame[column])
            for column in frame.columns
            if column not in CUSTOMER_COLUMNS
        }
        values["attributes"] = [
            dict(zip(extras, row, strict=True)) for row in zip(*extras.values(), strict=True)
        ] or [{} for _ in range(len(frame))]
        insert, parameters = self._bulk_insert(customers, values)
        statement = insert.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={c.name: insert.excluded[c.name] for c in customers.c if not c.primary_key},
        )
        conn.execute(statement, parameters)
        return len(frame)

    def _raise_if_unknown_customers(
        self,
        exc: sa.exc.IntegrityError,
        customer_ids: pd.Series,
        also_known: Iterable[str] = (),
    ) -> None:
        named = set(customer_ids.dropna())
        unknown = named - self.known_customer_ids(named) - set(also_known)
        if unknown:
            raise UnknownCustomers(sorted(unknown)) from exc


# --- engine setup ------------------------------------------------------------------------------


def new_decision(
    *,
    customer_id: str,
    offer_id: str,
    model_version: str,
    propensity: float | None,
    expected_value: float | None,
    context: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]],
    created_at: datetime | pd.Timestamp,
    decision_id: str | None = None,
) -> Decision:
    """A decision exactly as the store keeps it (checked, times in UTC, JSON with NaN and
    infinities as null), for writers that batch their inserts.

    Raises:
        ValueError: `propensity` is not in (0, 1].
    """
    checked = _float_or_none(propensity)
    if checked is not None and not 0 < checked <= 1:
        raise ValueError(f"propensity {checked} not in (0, 1]")
    return Decision(
        decision_id=decision_id if decision_id is not None else uuid.uuid4().hex,
        customer_id=customer_id,
        created_at=to_db_time(created_at),
        offer_id=offer_id,
        propensity=checked,
        expected_value=_float_or_none(expected_value),
        model_version=model_version,
        context=_json_ready(dict(context)),
        candidates=_json_ready([dict(c) for c in candidates]),
    )


def contact_count(customer_id: Any, offer_id: Any, since: Any) -> sa.ColumnElement[int]:
    """SQL: contacts of `offer_id` to a customer at or after `since` (values, columns or bound
    parameters): decisions that chose it plus `offer_sent` events naming it."""
    decided = (
        sa.select(sa.func.count())
        .select_from(decisions)
        .where(
            decisions.c.customer_id == customer_id,
            decisions.c.offer_id == offer_id,
            decisions.c.created_at >= since,
        )
        .scalar_subquery()
    )
    sent = (
        sa.select(sa.func.count())
        .select_from(events)
        .where(
            events.c.customer_id == customer_id,
            events.c.event_type == "offer_sent",
            events.c.offer_id == offer_id,
            events.c.timestamp >= since,
        )
        .scalar_subquery()
    )
    return decided + sent


def _normalise_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _create_engine(url: URL, *, echo: bool) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Enough connections for every thread that may read at once (the request pool's 40,
        # the background threads, the event loop): a read must never wait for a connection.
        engine = sa.create_engine(
            url, echo=echo, json_serializer=_dumps, pool_size=8, max_overflow=56
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend == "postgresql":
        engine = sa.create_engine(url, echo=echo, json_serializer=_dumps, pool_pre_ping=True)
        event.listen(engine, "connect", _postgres_on_connect)
        return engine
    raise StoreError(
        f"unsupported database {url.drivername!r}: use sqlite:///path.db or postgresql://…"
    )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module begins transactions lazily, only before DML, so a SELECT followed by an
    # INSERT would not be atomic; take over and issue BEGIN ourselves (_sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL: a commit is one append to the log, readers never block the writer.
        # synchronous=FULL: the log is fsynced at every commit, so an acknowledged write
        # survives a crash or power loss (NORMAL in WAL mode may lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


CHECKPOINT_SECONDS: Final = 0.5


class _Checkpointer:
    """SQLite WAL checkpoints in a background thread instead of inside a commit.

    By default the commit that grows the WAL past 1,000 pages copies them into the database and
    fsyncs it before returning: with a decision's commit writing ~4 pages (table and two
    indexes), every ~250th request waited 25-35 ms for it, the service's tail latency. Here the
    engine's connections never checkpoint (`wal_autocheckpoint=0`) and a thread runs a PASSIVE
    checkpoint (it never blocks readers or writers) every `CHECKPOINT_SECONDS`. Durability is
    unchanged: a commit is durable once the WAL is fsynced, before any checkpoint."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        event.listen(engine, "connect", _no_autocheckpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retain-wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(CHECKPOINT_SECONDS):
            try:
                raw = self.engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.fetchall()
                    cursor.close()
                finally:
                    raw.close()
            except Exception:  # a failed checkpoint loses nothing; the next one retries
                log.exception("WAL checkpoint failed; will retry")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")


def _sqlite_on_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front: a WAL read transaction cannot be
    # upgraded once another connection has committed (SQLITE_BUSY, without waiting).
    if conn.get_execution_options().get(_WRITE, False):
        begin_immediate(conn.connection.driver_connection)
    else:
        conn.exec_driver_sql("BEGIN")


WRITE_LOCK_RETRY_SECONDS: Final = 0.0005
SQLITE_MAX_PARAMETERS: Final = 32766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32
WRITE_LOCK_TIMEOUT_SECONDS: Final = 5.0  # what pysqlite's busy handler waited before
_write_turns: dict[str, threading.Lock] = {}
_write_turns_lock = threading.Lock()


@contextmanager
def write_turn(url: URL, timeout: float = WRITE_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """This process's turn to write to a SQLite database (one lock per database file, shared by
    every `Store` of the process and the decision log). Raises TimeoutError (answered 503)."""
    key = url.render_as_string(hide_password=False)
    with _write_turns_lock:
        lock = _write_turns.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise TimeoutError(f"the store's write lock was busy for {timeout:g} s")
    try:
        yield
    finally:
        lock.release()


def begin_immediate(dbapi_connection: Any, timeout: float = WRITE_LOCK_TIMEOUT_SECONDS) -> None:
    """BEGIN IMMEDIATE, polling SQLite's write lock (`while_locked`)."""
    while_locked(dbapi_connection, "BEGIN IMMEDIATE", (), timeout)


def while_locked(
    dbapi_connection: Any, sql: str, parameters: Sequence[Any], timeout: float
) -> None:
    """Execute a statement that takes SQLite's write lock, polling the lock every half
    millisecond. pysqlite's busy handler sleeps 1, 2, 5 … 100 ms between tries, so a writer of
    one worker process lost the lock, for seconds, to the other's decision log, which polls; now
    every writer polls alike (at most one per process, see `write_turn`)."""
    import sqlite3

    deadline = time.monotonic() + timeout
    dbapi_connection.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                dbapi_connection.execute(sql, parameters)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    # Raised from an event handler, where SQLAlchemy does not wrap it: say it
                    # as the 503 it is (a raw sqlite3 error would be answered 500).
                    raise TimeoutError(
                        f"the store's write lock was busy for {timeout:g} s"
                    ) from exc
                time.sleep(WRITE_LOCK_RETRY_SECONDS)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(WRITE_LOCK_TIMEOUT_SECONDS * 1000)}")


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # A commit returns once its WAL record is flushed, whatever the server's default says.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = on")
    dbapi_connection.commit()


class Prepared:
    """A statement compiled once and run on a pooled driver connection, for the reads and
    writes every request makes. SQLAlchemy's work around each execution (connection wrapper,
    events, an explicit BEGIN, parameter and result processing) costs ~0.5 ms here against
    ~0.05 ms for SQLite to answer a keyed SELECT. Parameters are bound as the statement's types
    bind them (the same stored values as SQLAlchemy's); rows come back as the driver returns
    them (no result processing), so select columns whose driver value is what the caller wants."""

    def __init__(self, engine: Engine, statement: sa.ClauseElement) -> None:
        self.statement = statement
        self.engine = engine
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        # The statement's own literal values; the caller gives the others.
        self.defaults = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        self.processors = {
            name: process
            for name, bind in compiled.binds.items()
            if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        # `?` placeholders take a sequence in `positiontup` order, named ones a mapping.
        self.order = list(compiled.positiontup or ()) if compiled.positional else None
        self.sqlite = dialect.name == "sqlite"
        self._rows_sqls: dict[int, str] = {}

    def _bound(self, parameters: Mapping[str, Any]) -> Any:
        values = self.defaults | dict(parameters)
        for name, process in self.processors.items():
            if name in values:
                values[name] = process(values[name])
        return values if self.order is None else [values[name] for name in self.order]

    def first(self, **parameters: Any) -> tuple[Any, ...] | None:
        """The first row of a SELECT for these parameters (named as its `bindparam`s)."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(self.sql, self._bound(parameters))
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool, which ends the read transaction
        return None if row is None else tuple(row)

    def write_many(
        self, rows: Sequence[Mapping[str, Any]], *, timeout: float = WRITE_LOCK_TIMEOUT_SECONDS
    ) -> None:
        """Insert `rows` (the statement is an INSERT), all or none, committed before returning.

        On SQLite all rows go in one multi-row INSERT run in autocommit: taking the write lock,
        writing and committing (the fsync) happen in one driver call, which releases the GIL
        once. In an explicit transaction each statement hands the GIL back and waits to get it
        again while the lock is held; under load, with the event loop holding the GIL, that
        stretched every decision commit to milliseconds, and the other worker waited for the
        lock all that time. The lock is polled (`while_locked`; TimeoutError, answered 503,
        if it stays busy for `timeout` seconds). PostgreSQL: one transaction, `executemany`.
        """
        if not rows:
            return
        raw = self.engine.raw_connection()
        try:
            if self.sqlite:
                parameters = [value for row in rows for value in self._bound(row)]
                if len(parameters) > SQLITE_MAX_PARAMETERS:
                    raise ValueError(
                        f"{len(rows)} rows need {len(parameters)} parameters, more than "
                        f"SQLite's {SQLITE_MAX_PARAMETERS}: write them in smaller batches"
                    )
                while_locked(raw.driver_connection, self._rows_sql(len(rows)), parameters, timeout)
                return
            cursor = raw.cursor()
            try:
                cursor.executemany(self.sql, [self._bound(row) for row in rows])
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                cursor.close()
        finally:
            raw.close()

    def _rows_sql(self, count: int) -> str:
        """The INSERT with `count` rows of values (its one `VALUES (…)` group repeated)."""
        sql = self._rows_sqls.get(count)
        if sql is None:
            head, values = self.sql.split(" VALUES ")
            sql = self._rows_sqls[count] = f"{head} VALUES {', '.join([values] * count)}"
        return sql


# --- conversions -------------------------------------------------------------------------------


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now("UTC")


def to_db_time(value: datetime | pd.Timestamp | str, *, bound: bool = False) -> datetime:
    """Naive UTC, whole microseconds (what both backends store). A `bound` is rounded up, so
    that `column < bound` and `column >= bound` keep their meaning for sub-microsecond bounds."""
    if type(value) is datetime and value.tzinfo is None:  # already so (the common case, fast)
        return value
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise ValueError(f"not a timestamp: {value!r}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    stamp = stamp.ceil("us") if bound else stamp.floor("us")
    return stamp.to_pydatetime()


def _python_values(series: pd.Series) -> list[Any]:
    """A column as Python values for the driver: missing as None, datetimes as naive UTC."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        # numpy turns datetime64[us] into datetime.datetime (NaT into None), exactly.
        micros = series.dt.floor("us").dt.as_unit("us").to_numpy()
        return micros.astype(object).tolist()
    values = series.to_numpy(dtype=object, copy=True)  # an object column's array is read-only
    values[series.isna().to_numpy()] = None
    return values.tolist()


def _column_values(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[Any]]:
    return {column: _python_values(frame[column]) for column in columns}


def _is_json(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.JSON)


def _array_item_type(column: sa.Column[Any]) -> Any:
    # JSON travels as text (serialised by `_dumps`, as on SQLite) and is cast in the SELECT.
    return sa.String() if _is_json(column) else column.type


def _frame(rows: Sequence[tuple[Any, ...]], dtypes: Mapping[str, str]) -> pd.DataFrame:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in dtypes]
    return pd.DataFrame(
        {
            name: pd.Series(list(values), dtype=dtype)
            for (name, dtype), values in zip(dtypes.items(), columns, strict=True)
        }
    )


def _frame_chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    if size < 1:
        raise ValueError(f"chunk_size must be positive, got {size}")
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _distinct_ids(ids: Iterable[Any]) -> list[str]:
    # Missing ids (None, NaN from a raw frame) match nothing; leave them out of the query.
    return [i for i in dict.fromkeys(ids) if isinstance(i, str)]


def _chunked(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{table} frame lacks contract columns {missing}; validate it first")


def _check_events(frame: pd.DataFrame) -> None:
    _require_columns(frame, EVENT_COLUMNS, "events")
    for column in _EVENT_KEYS:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            raise ValueError(
                f"events frame has no {column} at position {int(missing.argmax())}; "
                "validate it first (validate_events derives missing event ids)"
            )


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and math.isnan(value))
    )


def _float_or_none(value: float | None) -> float | None:
    if value is None or _is_missing(value):
        return None
    return float(value)


def _json_ready(value: Any) -> Any:
    """JSON has no NaN, infinity, numpy scalar or datetime: map them to null, Python, ISO text."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, date):
        return value.isoformat()
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_json_ready(value), allow_nan=False)

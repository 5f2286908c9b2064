"""Run a feature definition on DuckDB (default, in-process) or Apache Spark: same SQL, two dialects.

The engine-neutral core compiles a `QuerySpec` (features.definitions) into DuckDB SQL text. The
DuckDB engine runs that text as is; the Spark engine transpiles it with sqlglot and runs it with
`spark.sql`. Two plans produce identical rows:

* `by_cutoff` (default for a few distinct cutoffs, e.g. a monthly training panel or online
  scoring): every bounded-window scan runs once per cutoff with the cutoff as a literal, so the
  time bounds are pushed into the table scan (row groups outside the window are skipped).
  Unbounded ("all history") scans run once for all cutoffs: rows are aggregated per customer and
  time segment between consecutive cutoffs, and each cutoff merges the segments before it.
* `join` (many distinct cutoffs, as in an event-triggered entity frame): every scan joins events
  to the (customer_id, cutoff) keys with the time bounds as join conditions.

Either way the time bounds come from the engine, never from a definition: a past scan sees only
rows with `timestamp < cutoff`.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import uuid
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset
import sqlglot
import sqlglot.dialects.duckdb  # noqa: F401  (loaded here, not by the first query: ~0.1-0.2 s)
from sqlglot import exp

from features.definitions import (
    CHURN_FEATURES,
    Feature,
    FeatureSet,
    QuerySpec,
    Scan,
    static_feature,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

# Small results are fetched through the DB-API on purpose (`DuckDBSession.fetch`).
warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning, module=__name__)

Plan = Literal["auto", "by_cutoff", "join"]
Kind = Literal["numeric", "categorical", "temporal", "other"]

ROW = "_entity_row"
CUSTOMER_ROW = "_customer_row"
MAX_BY_CUTOFF = 32  # above this many distinct cutoffs `auto` picks the join plan

# The event columns definitions may read, with their SQL types (missing optional ones are NULL).
EVENT_TYPES_SQL = {
    "customer_id": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "event_type": "VARCHAR",
    "amount": "DOUBLE",
    "offer_id": "VARCHAR",
    "score": "DOUBLE",
    "channel": "VARCHAR",
}
EVENT_REQUIRED = ("customer_id", "timestamp", "event_type")
CUSTOMER_TYPES_SQL = {
    "signup_date": "TIMESTAMP",
    "country": "VARCHAR",
    "language": "VARCHAR",
    "segment": "VARCHAR",
    "loyalty_member": "BOOLEAN",
    "marketing_consent": "BOOLEAN",
}
_RESERVED = {"customer_id", "cutoff", ROW, CUSTOMER_ROW}

# What the engines accept as a table: a pandas or Arrow frame, a Parquet file or glob, or
# (SparkEngine only) a Spark DataFrame.
TableLike = Any


# --------------------------------------------------------------------------------------------
# SQL compilation (engine-neutral, DuckDB dialect)
# --------------------------------------------------------------------------------------------


def sql_timestamp(value: pd.Timestamp) -> str:
    """A TIMESTAMP literal with microsecond precision."""
    return f"TIMESTAMP '{pd.Timestamp(value).isoformat(sep=' ', timespec='microseconds')}'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_MARKER = "retain_cutoff_marker"


@functools.lru_cache(maxsize=4096)
def _cutoff_template(sql: str) -> str:
    """`sql` in DuckDB dialect with every unqualified `cutoff` column renamed to a marker."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name == "cutoff" and not node.table:
            return exp.column(_MARKER)
        return node

    return sqlglot.parse_one(sql, read="duckdb").transform(swap).sql(dialect="duckdb")


def _replace_cutoff(sql: str, cutoff: str) -> str:
    """Replace every unqualified reference to the column `cutoff` by an expression."""
    return re.sub(rf"\b{_MARKER}\b", f"({cutoff})", _cutoff_template(sql))


@functools.lru_cache(maxsize=4096)
def _references_cutoff(sql: str) -> bool:
    tree = sqlglot.parse_one(sql, read="duckdb")
    return any(c.name == "cutoff" and not c.table for c in tree.find_all(exp.Column))


def _bounds(scan: Scan, cutoff: str, timestamp: str = "timestamp") -> list[str]:
    days = scan.window_days
    if scan.direction == "past":
        bounds = [f"{timestamp} < {cutoff}"]
        if days is not None:
            bounds.append(f"{timestamp} >= {cutoff} - INTERVAL {days} DAY")
        return bounds
    return [f"{timestamp} > {cutoff}", f"{timestamp} <= {cutoff} + INTERVAL {days} DAY"]


def _aggregates(scan: Scan, cutoff: str | None = None) -> str:
    items = []
    for agg in scan.aggregates:
        sql = agg.sql if cutoff is None else _replace_cutoff(agg.sql, cutoff)
        items.append(f"{sql} AS {_quote(agg.name)}")
    return ",\n        ".join(items)


_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "str": "VARCHAR", "bool": "BOOLEAN"}


def _select_outputs(spec: QuerySpec) -> str:
    # The same column type whatever the plan (a merged count is a HUGEINT sum in DuckDB).
    outputs = ",\n    ".join(
        f"CAST({f.sql} AS {_SQL_TYPES[f.dtype]}) AS {_quote(f.name)}" for f in spec.outputs
    )
    return f"SELECT {ROW}, customer_id, cutoff,\n    {outputs}"


def _where_filter(spec: QuerySpec) -> str:
    return f"WHERE {spec.row_filter}\n" if spec.row_filter else ""


def is_segmented(scan: Scan) -> bool:
    """Unbounded past scans are computed once per time segment and merged per cutoff."""
    return scan.direction == "past" and scan.window_days is None


def partials_table(scan: Scan) -> str:
    return f"{scan.name}__partials"


def compile_partials(scan: Scan, cutoffs: Sequence[pd.Timestamp]) -> str:
    """One pass over an unbounded scan's rows: aggregates per customer and time segment.

    Segment k holds the rows in [cutoff_{k-1}, cutoff_k); cutoff k merges segments 1..k.
    """
    if any(_references_cutoff(a.sql) for a in scan.aggregates):
        raise ValueError(f"scan {scan.name!r}: an unbounded scan may not reference the cutoff")
    whens = " ".join(
        f"WHEN timestamp < {sql_timestamp(c)} THEN {k}" for k, c in enumerate(cutoffs, 1)
    )
    return f"""SELECT customer_id, segment,
        {_aggregates(scan)}
FROM (
    SELECT *, CASE {whens} END AS segment
    FROM {scan.source}
    WHERE timestamp < {sql_timestamp(cutoffs[-1])} AND ({scan.where})
) AS segmented
GROUP BY customer_id, segment"""


def compile_merge(scan: Scan, segment: int) -> str:
    """The running merge of an unbounded scan up to `segment`: segment 1 as it is, then the
    previous merge combined with the next segment (each step reads one segment, not all)."""
    names = ", ".join(_quote(a.name) for a in scan.aggregates)
    this = f"SELECT customer_id, {names} FROM {partials_table(scan)} WHERE segment = {segment}"
    if segment == 1:
        return this

    def merge(name: str, how: str) -> str:
        if how == "last":  # the newer side's value when it has one
            return f"arg_max({name}, _newer) FILTER (WHERE {name} IS NOT NULL) AS {name}"
        return f"{how}({name}) AS {name}"

    merged = ",\n        ".join(merge(_quote(a.name), a.merge) for a in scan.aggregates)
    return (
        f"SELECT customer_id,\n        {merged}\n"
        f"FROM (\n    SELECT customer_id, {names}, 0 AS _newer "
        f"FROM {merged_table(scan, segment - 1)}\n"
        f"    UNION ALL\n    SELECT customer_id, {names}, 1 AS _newer "
        f"FROM {partials_table(scan)} WHERE segment = {segment}\n) AS both_\n"
        "GROUP BY customer_id"
    )


def merged_table(scan: Scan, segment: int) -> str:
    return f"{scan.name}__upto_{segment}"


WINDOW_TABLE = "events__window"
BUCKET = "_bucket"  # a window row's customer bucket (see `compile_window`)


def window_scans(spec: QuerySpec) -> list[Scan]:
    """Bounded past scans of `events`: per cutoff, they all read one time range of the log."""
    return [
        s
        for s in spec.scans
        if s.source == "events" and s.direction == "past" and s.window_days is not None
    ]


def compile_window(spec: QuerySpec, cutoff: pd.Timestamp, buckets: int = 1) -> str:
    """The rows of `events` that the bounded past scans can see at `cutoff`, kept as a table
    (copied once, they are scanned by every such scan far more cheaply than the input).

    With several customer `buckets`, each row's bucket is kept too (`BUCKET`): hashed once
    here rather than by every scan of every bucket's query."""
    scans = window_scans(spec)
    days = max(s.window_days or 0 for s in scans)
    literal = sql_timestamp(cutoff)
    # only the columns the scans read: a narrower copy is cheaper to make and to hold
    used = set().union(*(_columns_read(s) for s in scans))
    used |= {"customer_id", "timestamp"}
    columns = ", ".join(c for c in EVENT_TYPES_SQL if c in used)
    if buckets > 1:
        columns += f", {_bucket_of_customer(buckets)} AS {BUCKET}"
    return (
        f"SELECT {columns} FROM events WHERE timestamp < {literal} "
        f"AND timestamp >= {literal} - INTERVAL {days} DAY"
    )


def _columns_read(scan: Scan) -> set[str]:
    """Names of the columns a scan's aggregates and row condition refer to."""
    names: set[str] = set()
    for sql in (scan.where, *(a.sql for a in scan.aggregates)):
        names |= _column_names(sql)
    return names


@functools.lru_cache(maxsize=1024)
def _column_names(sql: str) -> frozenset[str]:
    return frozenset(c.name for c in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Column))


def compile_by_cutoff(
    spec: QuerySpec,
    cutoff: pd.Timestamp,
    segment: int | None,
    *,
    windowed: bool = False,
    every_customer: int | None = None,
    bucket: tuple[int, int] | None = None,
) -> str:
    """The query for the entities of one cutoff (rows in no particular order).

    With `segment`, unbounded scans read their running merge up to it (`merged_table`, which
    must exist); without, they scan their source directly (the better plan for one cutoff).
    With `windowed`, bounded past scans of `events` read `WINDOW_TABLE` (see `compile_window`).
    With `every_customer` (the cutoff's 0-based position), the entities are all customers at
    this cutoff, numbered as `_cutoff_entities` numbers them, and are read straight from
    `customers` rather than joined back to it.
    With `bucket` = (b, n), only the entities whose customer falls in bucket b of n are computed
    (`customer_bucket`): n smaller queries need about 1/n of the working memory.
    """
    literal = sql_timestamp(cutoff)
    ctes = []
    recent = {s.name for s in window_scans(spec)} if windowed else set()
    in_bucket = window_bucket = None  # the bucket condition, and its form on the window copy
    if bucket is not None:
        in_bucket, window_bucket = customer_bucket(*bucket), f"{BUCKET} = {bucket[0]}"
    for scan in spec.scans:
        if is_segmented(scan) and segment is not None:
            body = f"SELECT * FROM {merged_table(scan, segment)} {_where_all(in_bucket)}"
        else:
            windowed_scan = scan.name in recent
            where = _where_all(
                *_bounds(scan, literal),
                f"({scan.where})",
                window_bucket if windowed_scan else in_bucket,
            )
            body = (
                f"SELECT customer_id,\n        {_aggregates(scan, literal)}\n"
                f"    FROM {WINDOW_TABLE if windowed_scan else scan.source}\n"
                f"    {where}\n"
                f"    GROUP BY customer_id"
            )
        ctes.append(f"{scan.name} AS (\n    {body}\n)")
    joins = "".join(f"LEFT JOIN {s.name} USING (customer_id)\n" for s in spec.scans)
    if every_customer is None:
        entity = (
            f"(SELECT {ROW}, customer_id, cutoff FROM entities "
            f"{_where_all(f'cutoff = {literal}', in_bucket)})"
            " AS entity\nLEFT JOIN customers USING (customer_id)"
        )
    else:
        entity = (
            f"(SELECT {_entity_number(str(every_customer))} AS {ROW}, {literal} AS cutoff, *"
            f" FROM customers {_where_all(in_bucket)}) AS entity"
        )
    return (
        "WITH\n" + ",\n".join(ctes) + "\n"
        f"{_select_outputs(spec)}\n"
        f"FROM {entity}\n"
        f"{joins}{_where_filter(spec)}"
    )


def _where_all(*conditions: str | None) -> str:
    """A WHERE clause requiring every given condition ('' when none is given)."""
    given = [c for c in conditions if c]
    return f"WHERE {' AND '.join(given)}" if given else ""


def customer_bucket(bucket: int, buckets: int) -> str:
    """SQL: the row's customer falls in `bucket` of `buckets` (a fixed hash partition)."""
    return f"{_bucket_of_customer(buckets)} = {bucket}"


def _bucket_of_customer(buckets: int) -> str:
    return f"hash(customer_id) % {buckets}"


def compile_join(spec: QuerySpec) -> str:
    """One query for entities with any number of distinct cutoffs."""
    ctes = ["keys AS (SELECT DISTINCT customer_id, cutoff FROM entities)"]
    for scan in spec.scans:
        on = " AND ".join(
            ["e.customer_id = keys.customer_id", *_bounds(scan, "keys.cutoff", "e.timestamp")]
        )
        ctes.append(
            f"{scan.name} AS (\n"
            f"    SELECT customer_id, cutoff,\n        {_aggregates(scan)}\n"
            f"    FROM (SELECT keys.cutoff, e.* FROM keys JOIN {scan.source} AS e ON {on}) AS h\n"
            f"    WHERE {scan.where}\n"
            f"    GROUP BY customer_id, cutoff\n)"
        )
    joins = "".join(f"LEFT JOIN {s.name} USING (customer_id, cutoff)\n" for s in spec.scans)
    return (
        "WITH\n" + ",\n".join(ctes) + "\n"
        f"{_select_outputs(spec)}\n"
        "FROM entities\n"
        "LEFT JOIN customers USING (customer_id)\n"
        f"{joins}{_where_filter(spec)}ORDER BY {ROW}"
    )


def merge_scans(spec: QuerySpec) -> QuerySpec:
    """One scan per distinct (source, window, direction, row condition): scans that read the
    same rows are computed in one pass (e.g. a panel's recency scan and the 90-day counts)."""
    merged: dict[tuple[object, ...], Scan] = {}
    for scan in spec.scans:
        key = (scan.source, scan.window_days, scan.direction, scan.where.strip().upper())
        if key in merged:
            first = merged[key]
            merged[key] = replace(first, aggregates=first.aggregates + scan.aggregates)
        else:
            merged[key] = scan
    return replace(spec, scans=tuple(merged.values()))


@functools.lru_cache(maxsize=256)
def _tables_read(sql: str) -> frozenset[str]:
    return frozenset(t.name for t in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Table))


def shared_sources(spec: QuerySpec) -> set[str]:
    """Sources read by more than one relation (scans and other sources): these are worth
    computing once and keeping, rather than re-deriving them for every reader."""
    readers: dict[str, int] = {}
    for scan in spec.scans:
        readers[scan.source] = readers.get(scan.source, 0) + 1
    for sql in spec.sources.values():
        for name in _tables_read(sql):
            readers[name] = readers.get(name, 0) + 1
    return {name for name in spec.sources if readers.get(name, 0) > 1}


def source_window(spec: QuerySpec, name: str, cutoffs: Sequence[pd.Timestamp]) -> str | None:
    """SQL condition on `timestamp` keeping every row of source `name` that the scans reading it
    can see at these cutoffs (None: all rows, e.g. an all-history reader or a source reader).

    A source kept as a table then holds only that time range of the log."""
    if not cutoffs or any(name in _tables_read(sql) for sql in spec.sources.values()):
        return None
    lows: list[pd.Timestamp] = []
    highs: list[pd.Timestamp] = []
    for scan in spec.scans:
        if scan.source != name:
            continue
        days = pd.Timedelta(days=scan.window_days or 0)
        if scan.direction == "past":
            if scan.window_days is None:
                return None
            lows.append(cutoffs[0] - days)
            highs.append(cutoffs[-1])
        else:
            lows.append(cutoffs[0])
            highs.append(cutoffs[-1] + days)
    if not lows:
        return None
    return f"timestamp BETWEEN {sql_timestamp(min(lows))} AND {sql_timestamp(max(highs))}"


def _still_read(spec: QuerySpec, *, sources: Mapping[str, str]) -> set[str]:
    """Relations the per-cutoff queries read once the all-history scans are partials: the
    sources of the other scans and, through source views, what those read."""
    needed = {s.source for s in spec.scans if not is_segmented(s)}
    pending = list(needed)
    while pending:
        name = pending.pop()
        for read in _tables_read(sources[name]) if name in sources else ():
            if read not in needed:
                needed.add(read)
                pending.append(read)
    return needed


def _typed(column: str, target: str, types: Mapping[str, str]) -> str:
    """The column as `target` type; no cast when it already is one (keeps filter pushdown)."""
    if column not in types:
        return f"CAST(NULL AS {target}) AS {column}"
    if types[column].upper() == target:
        return _quote(column)
    return f"CAST({_quote(column)} AS {target}) AS {column}"


def _events_view(types: Mapping[str, str], prefilter: bool) -> str:
    missing = [c for c in EVENT_REQUIRED if c not in types]
    if missing:
        raise ValueError(f"events: required column(s) missing: {', '.join(missing)}")
    items = [_typed(c, t, types) for c, t in EVENT_TYPES_SQL.items()]
    where = "\nWHERE customer_id IN (SELECT customer_id FROM entities)" if prefilter else ""
    return f"SELECT {', '.join(items)}\nFROM events_input{where}"


def _customers_view(types: Mapping[str, str]) -> str:
    for required in ("customer_id", "signup_date"):
        if required not in types:
            raise ValueError(f"customers: required column missing: {required}")
    items = [_typed("customer_id", "VARCHAR", types), CUSTOMER_ROW]
    items += [_typed(c, t, types) for c, t in CUSTOMER_TYPES_SQL.items()]
    items += [_quote(c) for c in types if c not in CUSTOMER_TYPES_SQL and c not in _RESERVED]
    return f"SELECT {', '.join(items)}\nFROM customers_input"


def _cutoff_entities(cutoffs: Sequence[pd.Timestamp]) -> str:
    """Every customer at every cutoff, numbered cutoff-major in the customers' order (the row
    numbers need not be consecutive: Spark's monotonically increasing ids are not)."""
    values = ", ".join(f"({k}, {sql_timestamp(c)})" for k, c in enumerate(cutoffs))
    return (
        f"SELECT {_entity_number('k.k', 'c.')} AS {ROW}, c.customer_id, k.cutoff\n"
        f"FROM customers AS c CROSS JOIN (VALUES {values}) AS k(k, cutoff)"
    )


def _entity_number(k: str, prefix: str = "") -> str:
    """Row number of (customer, cutoff number k), cutoff-major in the customers' order."""
    return f"{k} * (SELECT max({CUSTOMER_ROW}) + 1 FROM customers) + {prefix}{CUSTOMER_ROW}"


def kind_of(sql_type: str) -> Kind:
    """Classify a DuckDB or Spark column type for static attributes."""
    t = sql_type.upper()
    if re.match(
        r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?\d*|FLOAT\d*|DOUBLE|REAL|DECIMAL.*|BOOL(EAN)?|"
        r"LONG|SHORT|BYTE)$",
        t,
    ):
        return "numeric"
    if re.match(r"^(VARCHAR|STRING|TEXT|ENUM.*|CHAR.*)$", t):
        return "categorical"
    if t.startswith(("TIMESTAMP", "DATE", "TIME", "INTERVAL")):
        return "temporal"
    return "other"


# --------------------------------------------------------------------------------------------
# Sessions: where the SQL runs
# --------------------------------------------------------------------------------------------


class Session(Protocol):
    """One isolated run on an engine; its relations are dropped at the end.

    Relations: `events_input`/`customers_input` (the data as given), `entities`, and the views
    `events` and `customers` that select and type the contract columns.
    """

    def register(self, name: str, data: TableLike, *, numbered: bool = False) -> dict[str, str]:
        """Make `data` queryable as `name`; returns its columns' SQL types."""
        ...

    def create(self, name: str, sql: str, *, materialize: bool = False) -> None: ...

    def drop(self, name: str) -> None:
        """Forget a relation made by `create` (and free what it holds)."""
        ...

    def fetch(self, sql: str, *, small: bool = False) -> pa.Table:
        """The query's rows; `small` says there are few (an engine may fetch them otherwise)."""
        ...


class Engine(Protocol):
    default_plan: Plan
    prefilter_max_customers: int
    max_customers_per_query: int | None  # by_cutoff: split larger cutoffs into customer buckets

    def session(self) -> AbstractContextManager[Session]: ...


def _arrow(data: pd.DataFrame | pa.Table, columns: Sequence[str] | None) -> pa.Table:
    if isinstance(data, pd.DataFrame):
        if columns is not None:
            data = data[[c for c in columns if c in data.columns]]
        return pa.Table.from_pandas(data, preserve_index=False)
    if columns is not None:
        data = data.select([c for c in columns if c in data.column_names])
    return data


def _is_path(data: object) -> bool:
    return isinstance(data, str | os.PathLike)


def _wanted_columns(name: str) -> list[str] | None:
    """Read only the event columns the definitions use; keep every customers column."""
    return list(EVENT_TYPES_SQL) if name == "events_input" else None


class DuckDBSession:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._keep: list[pa.Table] = []  # registered Arrow tables must outlive the queries

    def register(self, name: str, data: TableLike, *, numbered: bool = False) -> dict[str, str]:
        if _is_path(data):
            path = str(data).replace("'", "''")
            if numbered:
                select = (
                    f"SELECT * EXCLUDE (file_row_number), file_row_number AS {CUSTOMER_ROW} "
                    f"FROM read_parquet('{path}', file_row_number = true)"
                )
            else:
                select = f"SELECT * FROM read_parquet('{path}')"
            self.con.execute(f"CREATE TEMP VIEW {name} AS {select}")
        else:
            table = _arrow(data, _wanted_columns(name))
            if numbered:
                rows = pa.array(np.arange(table.num_rows, dtype="int64"))
                table = table.append_column(CUSTOMER_ROW, rows)
            self._keep.append(table)
            # as a dataset, DuckDB pushes filters (the time windows) into pyarrow, which skips
            # rows before converting them; a bare Table would be converted whole on every scan
            self.con.register(name, pyarrow.dataset.dataset(table))
        described = self.con.execute(f"DESCRIBE {name}").fetchall()
        return {str(r[0]): str(r[1]) for r in described}

    def create(self, name: str, sql: str, *, materialize: bool = False) -> None:
        kind = "TEMP TABLE" if materialize else "TEMP VIEW"
        self.con.execute(f"CREATE OR REPLACE {kind} {name} AS {sql}")

    def drop(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")
        self.con.execute(f"DROP VIEW IF EXISTS {name}")

    def fetch(self, sql: str, *, small: bool = False) -> pa.Table:
        if small:  # the relation API binds a query twice (~25 ms); the DB-API copies its rows
            return self.con.execute(sql).to_arrow_table()
        return self.con.sql(sql).to_arrow_table()


class DuckDBEngine:
    """The default engine: DuckDB in-process; pandas/Arrow frames are scanned without copying.

    Args:
        threads: worker threads (default: all cores).
        memory_limit: DuckDB memory limit such as "4GB" (default: DuckDB's, 80% of RAM).
        plan: "auto" (by_cutoff for up to 32 distinct cutoffs, else join), "by_cutoff" or "join".
        prefilter_max_customers: when the entities name at most this many customers, events are
            first filtered to them (fast online scoring against a large event table).
        max_customers_per_query: in the by_cutoff plan, a cutoff with more customers runs as
            several queries over disjoint customer buckets (one query's hash tables for 1M
            customers take over 2 GB; None: one query per cutoff).
    """

    def __init__(
        self,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        plan: Plan = "auto",
        prefilter_max_customers: int = 50_000,
        max_customers_per_query: int | None = 250_000,
    ) -> None:
        self.threads = threads
        self.memory_limit = memory_limit
        self.default_plan = plan
        self.prefilter_max_customers = prefilter_max_customers
        self.max_customers_per_query = max_customers_per_query
        self._database: duckdb.DuckDBPyConnection | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()

    def _parent(self) -> duckdb.DuckDBPyConnection:
        # One in-memory database per engine; every session is a cursor (its own connection,
        # so its temp views and registered frames are private to it).
        with self._lock:
            if self._database is None:
                con = duckdb.connect(":memory:")
                con.execute(f"SET threads = {self.threads or os.cpu_count() or 1}")
                try:
                    con.execute("SET enable_progress_bar = false")
                except duckdb.InvalidInputException:
                    pass  # inside a Jupyter kernel without ipywidgets DuckDB refuses any value
                con.execute("SET preserve_insertion_order = false")
                if self.memory_limit:
                    con.execute(f"SET memory_limit = '{self.memory_limit}'")
                self._database = con
                # close it when the engine goes, or at exit before Python tears DuckDB down
                self._finalizer = weakref.finalize(self, con.close)
            return self._database

    def close(self) -> None:
        """Close the engine's database (a later session opens a new one)."""
        with self._lock:
            if self._database is not None:
                if self._finalizer is not None:
                    self._finalizer()
                self._database = None

    @contextmanager
    def session(self) -> Iterator[DuckDBSession]:
        con = self._parent().cursor()
        try:
            yield DuckDBSession(con)
        finally:
            con.close()


# Spark type names as the DuckDB names the views are written in (for the no-cast check)
_SPARK_TO_SQL = {
    "string": "VARCHAR",
    "timestamp_ntz": "TIMESTAMP",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
}


@functools.lru_cache(maxsize=1)
def default_engine() -> DuckDBEngine:
    """The shared DuckDB engine used when none is given (created on first use)."""
    return DuckDBEngine()


def _spark_type(arrow_type: pa.DataType) -> Any:
    from pyspark.sql import types as T

    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return T.TimestampNTZType()
    if pa.types.is_boolean(arrow_type):
        return T.BooleanType()
    if pa.types.is_integer(arrow_type):
        return T.LongType()
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return T.DoubleType()
    return T.StringType()


class SparkSessionRun:
    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.prefix = f"retain_{uuid.uuid4().hex[:10]}_"
        self.names: dict[str, str] = {}
        self.cached: dict[str, SparkDataFrame] = {}

    def translate(self, sql: str) -> str:
        """DuckDB SQL -> Spark SQL, with our relations renamed to this run's temp views."""

        def rename(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Table) and not node.db and node.name in self.names:
                return exp.to_table(self.names[node.name]).as_(node.alias or node.name)
            return node

        return sqlglot.parse_one(sql, read="duckdb").transform(rename).sql(dialect="spark")

    def _view(self, name: str, frame: SparkDataFrame) -> None:
        self.names[name] = self.prefix + name
        frame.createOrReplaceTempView(self.names[name])

    def register(self, name: str, data: TableLike, *, numbered: bool = False) -> dict[str, str]:
        from pyspark.sql import DataFrame
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        if isinstance(data, DataFrame):
            frame = data
            for field in frame.schema.fields:
                if isinstance(field.dataType, T.TimestampType | T.DateType):
                    # an instant becomes its UTC time (the run's session time zone is UTC)
                    frame = frame.withColumn(field.name, F.col(field.name).cast("timestamp_ntz"))
        elif _is_path(data):
            frame = self.spark.read.parquet(str(data))
        else:
            table = _arrow(data, _wanted_columns(name))
            schema = T.StructType(
                [T.StructField(f.name, _spark_type(f.type)) for f in table.schema]
            )
            frame = self.spark.createDataFrame(table, schema=schema)
        if numbered:
            frame = frame.withColumn(CUSTOMER_ROW, F.monotonically_increasing_id())
        self._view(name, frame)
        return {n: _SPARK_TO_SQL.get(t, t.upper()) for n, t in frame.dtypes}

    def create(self, name: str, sql: str, *, materialize: bool = False) -> None:
        frame = self.spark.sql(self.translate(sql))
        if materialize:
            frame = frame.cache()
            self.cached[name] = frame
        self._view(name, frame)

    def drop(self, name: str) -> None:
        if name in self.cached:
            self.cached.pop(name).unpersist()
        if name in self.names:
            self.spark.catalog.dropTempView(self.names.pop(name))

    def fetch(self, sql: str, *, small: bool = False) -> pa.Table:
        return self.spark.sql(self.translate(sql)).toArrow()

    def close(self) -> None:
        for frame in self.cached.values():
            frame.unpersist()
        for view in self.names.values():
            self.spark.catalog.dropTempView(view)


class SparkEngine:
    """Runs the same SQL on Apache Spark (transpiled by sqlglot from the DuckDB dialect).

    Accepts pandas or Arrow frames, Parquet paths or Spark DataFrames. Timestamps are handled as
    TIMESTAMP_NTZ (naive UTC, as in the contract); a Spark TIMESTAMP column holds instants and is
    read as their UTC time. Each call runs with the session time zone set to UTC (restored after).

    Args:
        spark: an active SparkSession.
        plan: "join" (default: one job, Spark distributes the range join), "by_cutoff" or "auto".
    """

    prefilter_max_customers = 0
    max_customers_per_query: int | None = None  # Spark partitions the work itself

    def __init__(self, spark: SparkSession, *, plan: Plan = "join") -> None:
        self.spark = spark
        self.default_plan = plan

    @contextmanager
    def session(self) -> Iterator[SparkSessionRun]:
        # Spark evaluates differences and casts of timestamps through the session time zone
        # (a wall-clock time in a DST gap would shift), so a run uses UTC and restores it after.
        zone_key = "spark.sql.session.timeZone"
        zone = self.spark.conf.get(zone_key) or "UTC"
        self.spark.conf.set(zone_key, "UTC")
        run = SparkSessionRun(self.spark)
        try:
            yield run
        finally:
            run.close()
            self.spark.conf.set(zone_key, zone)


# --------------------------------------------------------------------------------------------
# Running a spec
# --------------------------------------------------------------------------------------------


def _static_features(spec: QuerySpec, types: Mapping[str, str]) -> tuple[Feature, ...]:
    """Extra customers columns as features; clashes with defined names are errors."""
    taken = {f.name for f in spec.outputs} | {a.name for s in spec.scans for a in s.aggregates}
    skip = _RESERVED | set(CUSTOMER_TYPES_SQL) | set(spec.customer_columns)
    extras = []
    for column, sql_type in types.items():
        kind = kind_of(sql_type)
        if column in skip:
            continue
        if column in taken:
            raise ValueError(f"customers: column {column!r} clashes with a feature name")
        if kind not in ("numeric", "categorical"):
            raise ValueError(
                f"customers: column {column!r} has an unsupported type for a static attribute "
                "(numbers, strings or booleans only; derive dates as events instead)"
            )
        extras.append(static_feature(column, kind))
    return tuple(extras)


def _entities_frame(entities: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "cutoff") if c not in entities.columns]
    if missing:
        raise ValueError(f"entities: required column(s) missing: {', '.join(missing)}")
    cutoff = pd.to_datetime(entities["cutoff"])
    if isinstance(cutoff.dtype, pd.DatetimeTZDtype):
        cutoff = cutoff.dt.tz_convert("UTC").dt.tz_localize(None)
    if cutoff.isna().any():
        raise ValueError("entities: cutoff must not be missing")
    if entities["customer_id"].isna().any():
        raise ValueError("entities: customer_id must not be missing")
    return pd.DataFrame(
        {
            ROW: np.arange(len(entities), dtype="int64"),
            "customer_id": entities["customer_id"].astype("str").to_numpy(),
            "cutoff": cutoff.dt.as_unit("us").to_numpy(),
        }
    )


@dataclass
class Result:
    """Query results (Arrow tables, one per cutoff in the by_cutoff plan) and the spec."""

    parts: list[pa.Table]
    spec: QuerySpec
    order: np.ndarray | None = None  # positions putting the rows back in entity order


def run_spec(
    spec: QuerySpec,
    events: TableLike,
    customers: TableLike,
    *,
    entities: pd.DataFrame | None = None,
    cutoffs: Sequence[pd.Timestamp] | None = None,
    engine: Engine | None = None,
    plan: Plan | None = None,
) -> Result:
    """Compute `spec` for the entities (or every customer at every cutoff), all parts at once.

    The result's spec includes the extra static attributes found in `customers`.
    """
    streamed = list(
        stream_spec(
            spec, events, customers, entities=entities, cutoffs=cutoffs, engine=engine, plan=plan
        )
    )
    parts = [part for _, part in streamed]
    order = None
    if entities is not None and len(parts) > 1:  # back to the entities' order
        rows = np.concatenate([p.column(ROW).to_numpy() for p in parts])
        order = np.argsort(rows, kind="stable")
    return Result(parts, streamed[-1][0], order)  # every part carries the same spec


def stream_spec(
    spec: QuerySpec,
    events: TableLike,
    customers: TableLike,
    *,
    entities: pd.DataFrame | None = None,
    cutoffs: Sequence[pd.Timestamp] | None = None,
    engine: Engine | None = None,
    plan: Plan | None = None,
) -> Iterator[tuple[QuerySpec, pa.Table]]:
    """Compute `spec` part by part: (spec with the static attributes, rows) per cutoff in the
    by_cutoff plan, in cutoff order and entity order within a cutoff; one part in the join plan.

    A consumer that writes each part away holds one cutoff's rows at a time, not the panel.
    """
    engine = engine if engine is not None else default_engine()
    if (entities is None) == (cutoffs is None):
        raise ValueError("pass exactly one of entities or cutoffs")
    keys = _entities_frame(entities) if entities is not None else None
    if keys is not None:
        distinct = sorted(pd.Timestamp(c) for c in pd.unique(keys["cutoff"]))
    else:
        distinct = sorted({pd.Timestamp(c).as_unit("us") for c in cutoffs or []})
    chosen = plan or engine.default_plan
    if chosen == "auto":
        chosen = "by_cutoff" if len(distinct) <= MAX_BY_CUTOFF else "join"

    with engine.session() as session:
        types = session.register("customers_input", customers, numbered=True)
        spec = replace(spec, outputs=spec.outputs + _static_features(spec, types))
        # read by every cutoff's query: worth one copy when there are several
        several = chosen == "by_cutoff" and len(distinct) > 1
        session.create("customers", _customers_view(types), materialize=several)
        if keys is not None:
            session.register("entities", keys)
            n_customers = keys["customer_id"].nunique()
            prefilter = n_customers <= engine.prefilter_max_customers
        else:
            session.create("entities", _cutoff_entities(distinct))
            prefilter = False
        # Many cutoffs mean many scans: an in-memory frame is then copied once into the engine's
        # own format (cheaper scans, and min/max per block skip blocks outside a time window).
        windowed = chosen == "by_cutoff" and len(window_scans(merge_scans(spec))) > 1
        copy = chosen == "by_cutoff" and len(distinct) > 1 and not windowed and not _is_path(events)
        events_sql = _events_view(session.register("events_input", events), prefilter)
        session.create("events", events_sql, materialize=copy)
        shared = shared_sources(spec)
        for name, sql in spec.sources.items():
            window = source_window(spec, name, distinct) if name in shared else None
            if window:
                sql = f"SELECT * FROM ({sql}) AS whole WHERE {window}"
            session.create(name, sql, materialize=name in shared)
        spec = merge_scans(spec)
        if not distinct:
            yield spec, session.fetch(compile_join(spec) + " LIMIT 0")
            return
        if chosen == "join":
            yield spec, session.fetch(compile_join(spec))
            return
        buckets = 1
        if limit := engine.max_customers_per_query:
            if keys is None:
                count = session.fetch("SELECT count(*) AS n FROM customers").column("n")[0]
                n_customers = count.as_py()
            buckets = -(-n_customers // limit)
        segmented = [s for s in spec.scans if is_segmented(s)] if len(distinct) > 1 else []
        for scan in segmented:
            session.create(partials_table(scan), compile_partials(scan, distinct), materialize=True)
        if segmented:  # kept sources only the all-history scans read are done with: free them
            for name in shared - _still_read(spec, sources=spec.sources):
                session.drop(name)
        for k, cutoff in enumerate(distinct, 1):
            for scan in segmented:
                session.create(merged_table(scan, k), compile_merge(scan, k), materialize=True)
                if k > 1:
                    session.drop(merged_table(scan, k - 1))
            if windowed:
                window = compile_window(spec, cutoff, buckets)
                session.create(WINDOW_TABLE, window, materialize=True)
            pieces = [
                session.fetch(
                    compile_by_cutoff(
                        spec,
                        cutoff,
                        k if segmented else None,
                        windowed=windowed,
                        every_customer=k - 1 if keys is None else None,
                        bucket=(b, buckets) if buckets > 1 else None,
                    ),
                    small=prefilter,
                )
                for b in range(buckets)
            ]
            if windowed:
                session.drop(WINDOW_TABLE)
            # no local name holds the part: a consumer that writes it away frees it
            yield spec, _in_row_order(pieces)


def _in_row_order(pieces: list[pa.Table]) -> pa.Table:
    """The pieces as one table in entity-row order; empties `pieces`.

    Sorting the result rows here is cheaper than an SQL ORDER BY of wide rows."""
    part = pa.concat_tables(pieces)
    pieces.clear()
    return part.take(pc.sort_indices(part.column(ROW)))


_DTYPES = {"int64": "int64", "float64": "float64", "str": "str", "bool": "bool"}
_ARROW_TYPES = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "datetime64[us]": pa.timestamp("us"),
}


def output_dtypes(spec: QuerySpec) -> dict[str, str]:
    """The pandas dtype of each result column: keys, then the outputs in order."""
    dtypes = {"customer_id": "str", "cutoff": "datetime64[us]"}
    return dtypes | {f.name: _DTYPES[f.dtype] for f in spec.outputs}


def arrow_schema(dtypes: Mapping[str, str]) -> pa.Schema:
    """The Arrow schema of columns with these pandas dtypes (as written to Parquet)."""
    return pa.schema([(name, _ARROW_TYPES[dtype]) for name, dtype in dtypes.items()])


def to_frame(result: Result) -> pd.DataFrame:
    """The result as pandas with stable dtypes: keys, then the outputs in order. Consumes it."""
    parts, result.parts = result.parts, []
    return frame_from_parts(parts, output_dtypes(result.spec), result.order)


def frame_from_parts(
    parts: list[pa.Table], dtypes: Mapping[str, str], order: np.ndarray | None = None
) -> pd.DataFrame:
    """The parts' `dtypes` columns as one pandas frame (rows taken in `order` when given).

    The Arrow buffers are released while converting (and columns are not consolidated into
    2-D blocks), so a large panel is not held twice. Empties `parts`.
    """
    table = pa.concat_tables(parts, promote_options="permissive").select(list(dtypes))
    parts.clear()
    if order is not None:
        table = table.take(pa.array(order))
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    for name, dtype in dtypes.items():
        if frame[name].dtype != dtype:
            frame[name] = frame[name].astype(dtype)
    return frame


def build_features(
    events: TableLike,
    customers: TableLike,
    entities: pd.DataFrame,
    *,
    engine: Engine | None = None,
    feature_set: FeatureSet = CHURN_FEATURES,
    plan: Plan | None = None,
) -> pd.DataFrame:
    """Point-in-time features for each (customer_id, cutoff) pair, from events before the cutoff.

    Args:
        events: the events table (contract columns; extra columns are ignored): a pandas or
            Arrow frame, a Parquet path/glob, or a Spark DataFrame with SparkEngine.
        customers: the customers table, same forms; extra columns become static features.
        entities: a frame with `customer_id` and `cutoff` (Feast-style entity frame). A cutoff is
            exclusive: only events with `timestamp < cutoff` are used.
        engine: `DuckDBEngine()` (default) or `SparkEngine(spark)`.
        feature_set: the versioned definition (default `CHURN_FEATURES`).
        plan: override the engine's plan ("auto", "by_cutoff", "join"); results are identical.

    Returns:
        One row per entities row, in the same order: `customer_id`, `cutoff`, then
        `feature_set.columns`, then extra static attributes. Counts are int64 (0 when nothing
        happened), other numbers float64 with NaN for "no data", categoricals `str`.
    """
    return to_frame(
        run_spec(feature_set.spec(), events, customers, entities=entities, engine=engine, plan=plan)
    )


def event_time_range(
    events: TableLike, *, engine: Engine | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last event timestamp (the data's start and end)."""
    if isinstance(events, pd.DataFrame):
        stamps = pd.to_datetime(events["timestamp"])
        first, last = stamps.min(), stamps.max()
    else:
        with (engine or default_engine()).session() as session:
            session.register("events_input", events)
            row = session.fetch(
                'SELECT min("timestamp") AS a, max("timestamp") AS b FROM events_input'
            )
            first, last = row.column("a")[0].as_py(), row.column("b")[0].as_py()
    if pd.isna(first) or pd.isna(last):
        raise ValueError("events: no events, so no time range")
    return pd.Timestamp(first), pd.Timestamp(last)

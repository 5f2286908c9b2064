"""The same SQL on Spark (local mode) gives the DuckDB rows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pytest

from features.engine import SparkEngine, build_features
from features.panel import build_panel, monthly_cutoffs
from tests.factories import entities_frame, random_world

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("retain-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # not UTC on purpose: naive timestamps must not shift (a DST gap included)
        .config("spark.sql.session.timeZone", "America/New_York")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers, events = random_world(11, n_customers=30)
    # an event in New York's spring-forward gap: it exists in UTC
    gap = events.iloc[[0]].assign(
        event_id="gap", timestamp=pd.Timestamp("2025-03-09 02:30"), event_type="visit"
    )
    return customers, pd.concat([events, gap], ignore_index=True)


def test_build_panel_on_spark_equals_duckdb(
    spark: SparkSession, world: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    customers, events = world
    cutoffs = monthly_cutoffs(events, 3, 90)
    duck = build_panel(events, customers, cutoffs)
    on_spark = build_panel(events, customers, cutoffs, engine=SparkEngine(spark))
    assert len(duck) > 20
    pd.testing.assert_frame_equal(on_spark, duck, check_exact=False, rtol=1e-9)


def test_build_features_on_spark_by_cutoff_equals_duckdb(
    spark: SparkSession, world: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    customers, events = world
    ids = customers["customer_id"]
    entities = entities_frame(
        *[(c, t) for t in ("2025-03-09 03:00", "2025-04-01") for c in ids],
        (ids.iloc[0], "2025-10-02 17:45:12.123456"),
    )
    duck = build_features(events, customers, entities)
    on_spark = build_features(
        events, customers, entities, engine=SparkEngine(spark, plan="by_cutoff")
    )
    pd.testing.assert_frame_equal(on_spark, duck, check_exact=False, rtol=1e-9)


def test_build_features_on_spark_reads_spark_dataframes(
    spark: SparkSession, world: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    customers, events = world
    entities = entities_frame(*[(c, "2025-06-01") for c in customers["customer_id"]])
    columns = ["customer_id", "timestamp", "event_type", "amount", "offer_id", "score", "channel"]
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # naive pandas times are UTC instants
    try:
        events_table = pa.Table.from_pandas(events[columns])
        spark_events = spark.createDataFrame(events_table).repartition(4).cache()
        spark_customers = spark.createDataFrame(pa.Table.from_pandas(customers)).repartition(3)
        spark_customers = spark_customers.cache()
        assert spark_events.count() == len(events)
        assert spark_customers.count() == len(customers)
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert dict(spark_events.dtypes)["timestamp"] == "timestamp"  # instants, not wall-clock
    on_spark = build_features(spark_events, spark_customers, entities, engine=SparkEngine(spark))
    duck = build_features(events, customers, entities)
    pd.testing.assert_frame_equal(on_spark, duck, check_exact=False, rtol=1e-9)

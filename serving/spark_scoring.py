"""`retain score` scaled out: features on Spark, risk and CLV through `mlflow.pyfunc.spark_udf`.

What runs where (docs/scale-out.md has the cluster recipe):

- **Features**: `build_panel` with `SparkEngine` (the same SQL as DuckDB, transpiled by
  sqlglot): the events are aggregated by Spark, where they live; only the result, one row per
  active customer, comes back to the driver (as Arrow) and is handed to Spark again to score.
- **Risk and CLV**: the registered champions' pyfunc models (`models:/churn-risk@champion`,
  `models:/clv@champion`) as Spark UDFs (`mlflow.pyfunc.spark_udf`, `env_manager="local"`: the
  executors run the driver's Python environment), so inference runs on the executors. The
  churn pyfunc returns the calibrated probability, the CLV pyfunc the predicted revenue: the
  numbers the in-process run gets from the boosters (equal within float tolerance, tested).
- **Band** is a Spark column expression; **reasons** come from a pandas UDF (`mapInPandas`)
  running `serving.scoring.reason_columns` with the champion estimator on each partition, so
  they are the in-process reasons.
- **Best action** stays in-process only (`retain score`): it needs the offers catalog's rules
  and the contact caps from the online store; the columns are present and empty.

Nothing runs at import; pyspark and MLflow are imported when a function is called.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from features.engine import TableLike
from serving.models import CHURN, CLV
from serving.scoring import SCORE_COLUMNS, TOP_REASONS, reason_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

REASON_COLUMNS = tuple(f"reason_{j + 1}" for j in range(TOP_REASONS))


def _spark_schema(table: pa.Table) -> Any:
    from pyspark.sql import types as T

    def spark_type(arrow_type: pa.DataType) -> Any:
        if pa.types.is_timestamp(arrow_type):
            return T.TimestampNTZType()
        if pa.types.is_boolean(arrow_type):
            return T.BooleanType()
        if pa.types.is_integer(arrow_type):
            return T.LongType()
        if pa.types.is_floating(arrow_type):
            return T.DoubleType()
        return T.StringType()

    return T.StructType([T.StructField(f.name, spark_type(f.type)) for f in table.schema])


@contextmanager
def _pandas_udfs() -> Iterator[None]:
    # pyspark 4 warns (FutureWarning) at every pandas UDF it creates that it does not fully
    # support pandas 3. These UDFs exchange only numbers and strings, and their results are
    # tested equal to the in-process run's; the warning is silenced here, not globally.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        yield


def spark_features(
    spark: SparkSession,
    events: TableLike,
    customers: TableLike,
    *,
    as_of: pd.Timestamp,
    horizon_days: int = 90,
) -> pd.DataFrame:
    """The features of the customers active at `as_of`, computed by Spark (`SparkEngine`).

    The same rows and values as `retain score`'s in-process features (DuckDB).
    """
    from features.engine import SparkEngine
    from features.panel import build_panel, split_columns

    panel = build_panel(
        events,
        customers,
        [as_of],
        horizon_days=horizon_days,
        allow_incomplete=True,
        engine=SparkEngine(spark),
    )
    names, _ = split_columns(panel)
    return panel[["customer_id", *names]]


def _reasons_udf(
    estimator: Any, top_k: int
) -> Any:  # a function of an iterator of pandas frames, for mapInPandas
    def reasons(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            columns = reason_columns(estimator, estimator.encode(batch), batch, top_k=top_k)
            out = {"customer_id": batch["customer_id"].astype(str).to_numpy(dtype=object)}
            out |= {f"reason_{j + 1}": columns[j] for j in range(top_k)}
            yield pd.DataFrame(out)

    return reasons


def score_on_spark(
    spark: SparkSession,
    features: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    tracking_uri: str,
    alias: str = "champion",
    medium: float = 0.3,
    high: float = 0.6,
    reasons_from: float | None = 0.0,
    partitions: int | None = None,
) -> SparkDataFrame:
    """Score feature rows on Spark: risk and CLV by `spark_udf`, band, reasons by pandas UDF.

    Args:
        spark: The session (local or a cluster).
        features: `spark_features` rows (customer_id and the features).
        customers: The customers (segment and language are copied into the scores).
        tracking_uri: The MLflow tracking and registry URI the executors can reach as well.
        alias: Registry alias of the models.
        medium, high: Risk band thresholds.
        reasons_from: Reason codes for rows whose risk is at least this (None: no reasons).
        partitions: Repartition the rows to this many partitions (default: Spark's).

    Returns:
        A Spark DataFrame with `SCORE_COLUMNS` (best action columns empty: in-process only).
    """
    import mlflow
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from training.registry import load_champion

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    table = pa.Table.from_pandas(features, preserve_index=False)
    rows = spark.createDataFrame(table, schema=_spark_schema(table))
    if partitions is not None:
        rows = rows.repartition(partitions)
    names = [c for c in features.columns if c != "customer_id"]
    inputs = F.struct(*[F.col(f"`{c}`") for c in names])
    with _pandas_udfs():
        churn = mlflow.pyfunc.spark_udf(
            spark, f"models:/{CHURN}@{alias}", result_type="double", env_manager="local"
        )
        clv = mlflow.pyfunc.spark_udf(
            spark, f"models:/{CLV}@{alias}", result_type="double", env_manager="local"
        )
    scored = rows.withColumn("risk", churn(inputs)).withColumn("clv", clv(inputs))
    scored = scored.withColumn(
        "band",
        F.when(F.col("risk") >= high, "high")
        .when(F.col("risk") >= medium, "medium")
        .otherwise("low"),
    )
    # cached: the reasons read the risk again, and the UDFs should run once per row
    scored = scored.cache()
    wanted = scored.filter(F.col("risk") >= reasons_from) if reasons_from is not None else None
    # the features hold `segment` and `language` too; the scores take them from the customers
    scored = scored.select("customer_id", "risk", "clv", "band")
    if wanted is not None:
        estimator = load_champion(CHURN, alias=alias, tracking_uri=tracking_uri).model
        wanted = wanted.select("customer_id", *[F.col(f"`{c}`") for c in names])
        schema = T.StructType(
            [T.StructField("customer_id", T.StringType())]
            + [T.StructField(c, T.StringType()) for c in REASON_COLUMNS]
        )
        with _pandas_udfs():
            found = wanted.mapInPandas(_reasons_udf(estimator, TOP_REASONS), schema)
        scored = scored.join(found, on="customer_id", how="left")
    else:
        for column in REASON_COLUMNS:
            scored = scored.withColumn(column, F.lit(None).cast("string"))
    info = pa.Table.from_pandas(
        customers[["customer_id", "segment", "language"]], preserve_index=False
    )
    scored = scored.join(
        spark.createDataFrame(info, schema=_spark_schema(info)), on="customer_id", how="left"
    )
    scored = scored.withColumn("best_action", F.lit(None).cast("string")).withColumn(
        "best_action_value", F.lit(None).cast("double")
    )
    return scored.select(*SCORE_COLUMNS)


def collect(scores: SparkDataFrame) -> pd.DataFrame:
    """The scores on the driver, in the in-process run's dtypes (through Arrow)."""
    frame = scores.toArrow().to_pandas()
    return frame.sort_values("customer_id", kind="stable").reset_index(drop=True)


def main(argv: Sequence[str] | None = None) -> int:
    """spark-submit entry point: features, scores, Parquet output (see docs/scale-out.md)."""
    from pyspark.sql import SparkSession

    parser = argparse.ArgumentParser(description="Retain batch scoring on Spark.")
    parser.add_argument("--events", required=True, help="events Parquet path or glob")
    parser.add_argument("--customers", required=True, help="customers Parquet path")
    parser.add_argument("--as-of", required=True, help="scoring date YYYY-MM-DD")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking/registry URI")
    parser.add_argument("--out", required=True, help="output directory (Parquet)")
    parser.add_argument("--alias", default="champion", help="registry alias")
    parser.add_argument("--horizon-days", type=int, default=90, help="churn horizon H")
    parser.add_argument("--medium", type=float, default=0.3, help="medium band from")
    parser.add_argument("--high", type=float, default=0.6, help="high band from")
    parser.add_argument("--partitions", type=int, default=None, help="scoring partitions")
    args = parser.parse_args(argv)

    spark = SparkSession.builder.appName("retain-score").getOrCreate()
    as_of = pd.Timestamp(args.as_of).normalize().as_unit("us")
    customers = spark.read.parquet(args.customers).select("customer_id", "segment", "language")
    features = spark_features(
        spark, args.events, args.customers, as_of=as_of, horizon_days=args.horizon_days
    )
    scores = score_on_spark(
        spark,
        features,
        customers.toArrow().to_pandas(),
        tracking_uri=args.tracking_uri,
        alias=args.alias,
        medium=args.medium,
        high=args.high,
        partitions=args.partitions,
    )
    scores.write.mode("overwrite").parquet(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

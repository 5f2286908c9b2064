"""Scoring on Spark (local mode) gives the in-process `retain score` run's risk, CLV and reasons."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.settings import get_settings
from serving.cli import app as cli
from serving.spark_scoring import collect, score_on_spark, spark_features
from tests.serving.scoring_world import World, trained_world

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

SCORE_DATE = "2026-09-01"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime")
    from pyspark.sql import SparkSession

    # pyspark starts the UDFs' Python workers with $PYSPARK_PYTHON (default: `python3` on the
    # PATH); they need this environment (pandas, LightGBM, the project)
    patch = pytest.MonkeyPatch()
    patch.setenv("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("retain-spark-scoring-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    patch.undo()


@pytest.fixture(scope="module")
def world() -> World:
    return trained_world()


@pytest.fixture(scope="module")
def in_process(world: World, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """`retain score --data <world> --reasons all` (DuckDB features, boosters in-process)."""
    data_dir = tmp_path_factory.mktemp("in-process")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETAIN_MLFLOW_TRACKING_URI", world.tracking_uri)
        patch.setenv("RETAIN_DATA_DIR", str(data_dir))
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(
                cli,
                [
                    "score",
                    "--as-of",
                    SCORE_DATE,
                    "--data",
                    str(world.root / "demo"),
                    "--threads",
                    "1",
                    "--reasons",
                    "all",
                ],
            )
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(Path(data_dir) / "scores" / SCORE_DATE / "scores.parquet")
    return scores.sort_values("customer_id", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def features(spark: SparkSession, world: World) -> pd.DataFrame:
    """The active customers' features at SCORE_DATE, computed by Spark."""
    as_of = pd.Timestamp(SCORE_DATE).as_unit("us")
    return spark_features(spark, world.dataset.events, world.dataset.customers, as_of=as_of)


def test_score_on_spark_equals_in_process_run(
    spark: SparkSession, world: World, features: pd.DataFrame, in_process: pd.DataFrame
) -> None:
    scored = score_on_spark(
        spark,
        features,
        world.dataset.customers,
        tracking_uri=world.tracking_uri,
        partitions=3,
    )
    on_spark = collect(scored)

    assert len(in_process) > 50
    assert on_spark["customer_id"].tolist() == in_process["customer_id"].tolist()
    np.testing.assert_allclose(on_spark["risk"], in_process["risk"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(on_spark["clv"], in_process["clv"], rtol=1e-9, atol=1e-9)
    assert on_spark["band"].tolist() == in_process["band"].tolist()
    for column in ("segment", "language", "reason_1", "reason_2", "reason_3"):
        assert on_spark[column].astype(object).where(on_spark[column].notna(), None).tolist() == (
            in_process[column].astype(object).where(in_process[column].notna(), None).tolist()
        ), column
    assert in_process["reason_1"].notna().all()
    assert on_spark["best_action"].isna().all()  # in-process only


def test_score_on_spark_reasons_only_from_threshold(
    spark: SparkSession, world: World, features: pd.DataFrame, in_process: pd.DataFrame
) -> None:
    threshold = float(in_process["risk"].median())
    scored = score_on_spark(
        spark,
        features,
        world.dataset.customers,
        tracking_uri=world.tracking_uri,
        reasons_from=threshold,
    )
    on_spark = collect(scored)
    high = on_spark["risk"].to_numpy() >= threshold
    assert 0 < high.sum() < len(on_spark)
    assert on_spark.loc[high, "reason_1"].notna().all()
    assert on_spark.loc[~high, "reason_1"].isna().all()

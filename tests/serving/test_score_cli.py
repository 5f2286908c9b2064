"""`retain score` on a data directory: checked and in-place reads agree, `--reasons` bands,
the batch best action, the CSV and the summary's timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.panel import build_panel, split_columns
from features.settings import get_settings
from serving.cli import app as cli
from serving.models import ModelHolder, registry_loader
from serving.scoring import offer_values, profiles, score_customers
from tests.serving.scoring_world import World, trained_world
from training.policy import best_actions, eligibility

SCORE_DATE = "2026-09-01"


@pytest.fixture(scope="module")
def world() -> World:
    return trained_world()


def run_score(world: World, data_dir: Path, *options: str) -> Path:
    """`retain score --as-of SCORE_DATE --data <world> OPTIONS`; returns the run directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETAIN_MLFLOW_TRACKING_URI", world.tracking_uri)
        patch.setenv("RETAIN_DATA_DIR", str(data_dir))
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(
                cli,
                ["score", "--as-of", SCORE_DATE, "--data", str(world.root / "demo"), *options],
            )
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return data_dir / "scores" / SCORE_DATE


@pytest.fixture(scope="module")
def checked(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_score(
        world, tmp_path_factory.mktemp("checked"), "--threads", "1", "--reasons", "all"
    )


def test_score_in_place_equals_checked_run(
    world: World, checked: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    in_place = run_score(
        world,
        tmp_path_factory.mktemp("in-place"),
        "--no-check",
        "--threads",
        "2",
        "--reasons",
        "all",
    )
    expected = pd.read_parquet(checked / "scores.parquet")
    got = pd.read_parquet(in_place / "scores.parquet")
    assert len(expected) > 50
    assert expected["best_action"].nunique() > 1  # the contact caps and rules had work to do
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


def test_score_reasons_medium_leaves_low_band_without_reasons(
    world: World, checked: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = run_score(world, tmp_path_factory.mktemp("medium"), "--threads", "1")
    everyone = pd.read_parquet(checked / "scores.parquet")
    medium = pd.read_parquet(run / "scores.parquet")
    low = (medium["band"] == "low").to_numpy()
    assert 0 < low.sum() < len(medium)
    assert medium.loc[low, ["reason_1", "reason_2", "reason_3"]].isna().all().all()
    reasons = ["reason_1", "reason_2", "reason_3"]
    pd.testing.assert_frame_equal(medium.loc[~low, reasons], everyone.loc[~low, reasons])
    pd.testing.assert_frame_equal(
        medium.drop(columns=reasons), everyone.drop(columns=reasons), check_exact=True
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reasons_for"] == "medium"
    assert {"load_models", "read", "features", "risk", "reasons", "write"} <= set(
        summary["timings"]
    )
    assert all(stage["wall_s"] >= 0 for stage in summary["timings"].values())


def test_score_csv_equals_parquet(checked: Path) -> None:
    parquet = pd.read_parquet(checked / "scores.parquet")
    csv = pd.read_csv(checked / "scores.csv", keep_default_na=False, na_values=[""])
    assert list(csv.columns) == list(parquet.columns)
    for column in ("risk", "clv", "best_action_value"):
        np.testing.assert_array_equal(csv[column].to_numpy(), parquet[column].to_numpy())
    for column in ("customer_id", "band", "reason_1", "reason_3", "best_action"):
        assert csv[column].astype(object).where(csv[column].notna(), None).tolist() == (
            parquet[column].astype(object).where(parquet[column].notna(), None).tolist()
        )


def test_score_customers_best_action_equals_policy(world: World) -> None:
    models = ModelHolder(registry_loader(world.tracking_uri), alias="champion").reload()
    as_of = pd.Timestamp(SCORE_DATE).as_unit("us")
    events, customers = world.dataset.events, world.dataset.customers
    panel = build_panel(events, customers, [as_of], allow_incomplete=True)
    names, _ = split_columns(panel)
    features = panel[["customer_id", "cutoff", *names]]
    offers = world.dataset.offers
    rng = np.random.default_rng(0)
    recent = pd.DataFrame(  # random contact counts, so that the caps bite
        rng.integers(0, 3, size=(len(features), len(offers))),
        index=features["customer_id"].astype(str).to_numpy(),
        columns=[o.offer_id for o in offers],
    )
    scores = score_customers(
        features, customers, models, offers, as_of=as_of, medium=0.3, high=0.6, recent=recent
    )

    assert models.clv is not None and models.next_offer is not None
    clv = models.clv.model.booster_.predict(models.clv.model.encode(features))
    values = offer_values(models.next_offer.model, features, clv, offers)
    info = customers.set_index("customer_id").reindex(features["customer_id"]).reset_index()
    rules = eligibility(profiles(info, as_of), offers, recent).reset_index(drop=True)
    expected = best_actions(values, rules)
    assert scores["best_action"].tolist() == expected.tolist()
    chosen = values.to_numpy()[np.arange(len(values)), values.columns.get_indexer(expected)]
    np.testing.assert_array_equal(scores["best_action_value"].to_numpy(), chosen)

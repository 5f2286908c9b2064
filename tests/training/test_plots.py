from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from training.metrics import group_metrics
from training.plots import (
    plot_calibration,
    plot_clv_deciles,
    plot_group_auc,
    plot_importance,
    plot_lift,
    plot_precision_recall,
    plot_roc,
)


@pytest.fixture(scope="module")
def curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=500)
    y = (rng.random(500) < p).astype(float)
    return {"model": (y, p), "baseline": (y, rng.uniform(size=500))}


@pytest.mark.parametrize(
    "plot", [plot_roc, plot_precision_recall, plot_calibration, plot_lift], ids=lambda f: f.__name__
)
def test_plot_curves_draws_one_series_per_model(
    plot, curves: dict[str, tuple[np.ndarray, np.ndarray]], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    figure = plot(curves)

    assert isinstance(figure, Figure)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert {"model", "baseline"} <= set(labels)
    figure.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_importance_shows_top_features_largest_first() -> None:
    importance = pd.Series({"a": 1.0, "b": 5.0, "c": 3.0, "d": 0.5})

    figure = plot_importance(importance, top_n=3)

    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["a", "c", "b"]  # barh draws bottom-up: largest at the top


def test_plot_group_auc_colours_flagged_groups_red() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    group = rng.choice(["de", "fr"], size=n)
    p = rng.uniform(size=n)
    y = np.where(group == "fr", rng.random(n) < 0.5, rng.random(n) < p).astype(int)
    table = group_metrics(pd.DataFrame({"language": group}), y, p, group_columns=["language"])

    figure = plot_group_auc(table, overall_auc=0.7)

    colours = {bar.get_y(): bar.get_facecolor()[:3] for bar in figure.axes[0].patches}
    assert len(colours) == 2
    assert sorted(colours.values()) == sorted([to_rgb("tab:red"), to_rgb("tab:blue")])


def test_plot_clv_deciles_returns_figure() -> None:
    y = np.arange(100, dtype=float)

    figure = plot_clv_deciles(y, {"model": y * 1.1})

    assert len(figure.axes[0].lines) == 2

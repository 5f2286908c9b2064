"""PSI on known distributions, bins (ties, missing values, unseen categories) and invariants."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.drift import (
    CRITICAL,
    MISSING,
    OK,
    OTHER,
    WARNING,
    Thresholds,
    categorical_drift,
    compare_frames,
    drift_report,
    numeric_drift,
    plot_psi,
    psi_from_counts,
    quantile_edges,
    worst,
)

N = 20_000


def normal(mean: float, sd: float = 1.0, *, seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_psi_from_counts_matches_the_formula() -> None:
    # p = (0.5, 0.5), q = (0.25, 0.75): (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert psi_from_counts([50, 50], [25, 75]) == pytest.approx(expected, rel=1e-12)
    assert psi_from_counts([1, 1], [1, 3]) == pytest.approx(expected, rel=1e-12)  # shares only


def test_psi_from_counts_floors_an_empty_bin_at_epsilon() -> None:
    value = psi_from_counts([100, 0], [50, 50], epsilon=1e-4)
    expected = (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert value == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(value)
    assert psi_from_counts([100, 0], [50, 50], epsilon=1e-6) > value  # smaller floor, larger PSI


@pytest.mark.parametrize(
    ("reference", "current", "reason"),
    [
        ([1, 2], [1, 2, 3], "shape"),
        ([0, 0], [1, 2], "at least one row"),
        ([1, 2], [0, 0], "at least one row"),
        ([1, -1], [1, 1], ">= 0"),
    ],
)
def test_psi_from_counts_refuses_bad_histograms(
    reference: list[int], current: list[int], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        psi_from_counts(reference, current)


def test_numeric_psi_of_identical_samples_is_zero() -> None:
    sample = normal(0, seed=1)
    assert numeric_drift("x", sample, sample).psi == 0.0


def test_numeric_psi_of_two_samples_of_one_distribution_is_near_zero() -> None:
    drift = numeric_drift("x", normal(0, seed=1), normal(0, seed=2))
    assert drift.psi < 0.01
    assert drift.status == OK


@pytest.mark.parametrize(
    ("shift", "low", "high", "status"),
    [
        # For unit normals `shift` apart, PSI tends to the symmetrised KL divergence, shift**2
        # (binning can only lose some of it; sampling noise adds a little).
        (1.0, 0.85, 1.1, CRITICAL),
        (0.4, 0.12, 0.2, WARNING),
        (0.2, 0.03, 0.06, OK),
    ],
)
def test_numeric_psi_grows_with_a_mean_shift(
    shift: float, low: float, high: float, status: str
) -> None:
    drift = numeric_drift("x", normal(0, seed=1), normal(shift, seed=2))
    assert low < drift.psi < high
    assert drift.status == status


def test_numeric_psi_sees_a_change_of_spread() -> None:
    assert numeric_drift("x", normal(0, 1, seed=1), normal(0, 2, seed=2)).status == CRITICAL


def test_noise_floor_predicts_the_psi_of_undrifted_samples() -> None:
    rng = np.random.default_rng(0)
    values = [
        numeric_drift("x", rng.normal(size=2000), rng.normal(size=200)).psi for _ in range(100)
    ]
    reference = pd.DataFrame({"x": rng.normal(size=2000)})
    floor = compare_frames(reference, reference.head(200), features=["x"]).noise_floor
    assert floor == pytest.approx(9 * (1 / 2000 + 1 / 200))
    assert np.mean(values) == pytest.approx(floor, rel=0.25)


def test_quantile_edges_merge_ties_and_end_at_the_maximum() -> None:
    counts = np.array([0] * 70 + [1] * 15 + [2] * 14 + [7])
    edges = quantile_edges(counts, bins=10)
    assert edges.tolist() == [0.0, 1.0, 2.0, 7.0]
    assert quantile_edges(np.array([np.nan, np.inf])).size == 0


def test_numeric_bins_hold_deciles_of_a_continuous_reference() -> None:
    drift = numeric_drift("x", normal(0, seed=1), normal(0, seed=1), bins=10)
    inner = [b.reference for b in drift.bins[1:-2]]  # between the out-of-range and missing bins
    assert len(inner) == 10
    assert inner == pytest.approx([0.1] * 10, abs=1e-3)
    assert sum(b.reference for b in drift.bins) == pytest.approx(1.0)


def test_numeric_psi_of_a_constant_feature_that_moves_is_critical() -> None:
    zeros = np.zeros(500)
    assert numeric_drift("n_cancellation_30d", zeros, zeros).psi == 0.0
    for moved in (zeros + 1, zeros - 1):  # above and below the training range
        assert numeric_drift("n_cancellation_30d", zeros, moved).status == CRITICAL


def test_numeric_missing_values_are_a_bin_of_their_own() -> None:
    reference = normal(0, seed=1, n=1000)
    current = reference.copy()
    current[:300] = np.nan
    drift = numeric_drift("x", reference, current)
    assert drift.bins[-1].label == MISSING
    assert (drift.missing_reference, drift.missing_current) == (0.0, 0.3)
    assert drift.status == CRITICAL


def test_numeric_drift_reads_nullable_series() -> None:
    reference = pd.Series([1, 2, None, 4] * 50, dtype="Int64")
    drift = numeric_drift("x", reference, reference.astype("Float64"))
    assert drift.psi == 0.0
    assert drift.missing_reference == 0.25


def test_categorical_psi_by_category() -> None:
    reference = ["retail"] * 50 + ["business"] * 50
    current = ["retail"] * 25 + ["business"] * 75
    drift = categorical_drift("segment", reference, current)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert drift.psi == pytest.approx(expected, rel=1e-9)
    assert [b.label for b in drift.bins] == ["business", "retail", OTHER, MISSING]


def test_categorical_unseen_category_and_missing_values_drift() -> None:
    reference = pd.Series(["de", "fr"] * 100)
    unseen = categorical_drift("language", reference, pd.Series(["de", "fr", "nl", "nl"] * 50))
    assert unseen.status == CRITICAL
    assert {b.label: b.current for b in unseen.bins}[OTHER] == 0.5
    missing = categorical_drift("language", reference, pd.Series(["de", None] * 100))
    assert missing.missing_current == 0.5
    assert missing.status == CRITICAL


def test_categorical_rare_categories_share_the_other_bin() -> None:
    reference = ["a"] * 60 + ["b"] * 30 + ["c"] * 6 + ["d"] * 4
    drift = categorical_drift("x", reference, reference, max_categories=2)
    shares = {b.label: b.reference for b in drift.bins}
    assert shares == {"a": 0.6, "b": 0.3, OTHER: 0.1, MISSING: 0.0}
    assert drift.psi == 0.0


def test_thresholds_decide_status_at_their_bounds() -> None:
    limits = Thresholds(warning=0.1, critical=0.25)
    assert [limits.status(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 9.0)] == [
        OK,
        OK,
        WARNING,
        WARNING,
        CRITICAL,
        CRITICAL,
    ]
    strict = Thresholds(warning=0.01, critical=0.02)
    assert numeric_drift("x", normal(0, seed=1), normal(0.2, seed=2), thresholds=strict).status == (
        CRITICAL
    )


@pytest.mark.parametrize(("warning", "critical"), [(0.3, 0.2), (0.0, 0.2), (-1.0, 0.25)])
def test_thresholds_refuse_an_inconsistent_pair(warning: float, critical: float) -> None:
    with pytest.raises(ValueError, match="0 < warning <= critical"):
        Thresholds(warning=warning, critical=critical)


def test_worst_status_orders_ok_warning_critical() -> None:
    assert worst([]) == OK
    assert worst([OK, WARNING, OK]) == WARNING
    assert worst([WARNING, CRITICAL, OK]) == CRITICAL


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    n = 4000
    reference = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, n),
            "shifted": rng.normal(0, 1, n),
            "segment": rng.choice(["retail", "business"], n, p=[0.7, 0.3]),
            "member": rng.random(n) < 0.5,
        }
    )
    current = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, n),
            "shifted": rng.normal(1.5, 1, n),
            "segment": rng.choice(["retail", "business"], n, p=[0.7, 0.3]),
            "member": rng.random(n) < 0.5,
        }
    )
    return reference, current


def test_compare_frames_ranks_features_and_takes_the_worst_status() -> None:
    reference, current = _frames()
    scores = np.random.default_rng(9).random(len(reference))
    result = compare_frames(
        reference,
        current,
        features=["stable", "shifted", "segment", "member"],
        reference_scores=scores,
        current_scores=scores,
    )
    by_name = {d.feature: d for d in result.features}
    assert result.features[0].feature == "shifted"
    assert by_name["shifted"].status == CRITICAL
    assert all(by_name[f].status == OK for f in ("stable", "segment", "member"))
    assert by_name["segment"].kind == by_name["member"].kind == "categorical"
    assert by_name["stable"].kind == "numeric"
    assert result.score is not None and result.score.psi == 0.0
    assert result.status == CRITICAL
    assert result.max_psi == by_name["shifted"].psi
    assert result.counts() == {OK: 4, WARNING: 0, CRITICAL: 1}
    table = result.table()
    assert table["feature"].iloc[0] == "churn_risk" and len(table) == 5


def test_compare_frames_without_drift_is_ok() -> None:
    reference, current = _frames()
    current["shifted"] = reference["shifted"].to_numpy()
    result = compare_frames(reference, current, features=list(reference.columns))
    assert result.status == OK
    assert result.score is None


def test_compare_frames_treats_named_columns_as_categorical() -> None:
    reference = pd.DataFrame({"code": [1, 2, 3, 4] * 25})
    result = compare_frames(reference, reference, features=["code"], categorical=["code"])
    assert result.features[0].kind == "categorical"
    assert [b.label for b in result.features[0].bins] == ["1", "2", "3", "4", OTHER, MISSING]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("empty", "rows on both sides"),
        ("column", "the current data lacks columns: shifted"),
        ("scores", "scores of both"),
    ],
)
def test_compare_frames_refuses_bad_input(change: str, reason: str) -> None:
    reference, current = _frames()
    scores = None
    if change == "empty":
        current = current.iloc[0:0]
    elif change == "column":
        current = current.drop(columns=["shifted"])
    else:
        scores = np.zeros(len(reference))
    with pytest.raises(ValueError, match=reason):
        compare_frames(
            reference, current, features=list(reference.columns), reference_scores=scores
        )


def test_result_to_dict_is_json_ready_and_complete() -> None:
    import json

    reference, current = _frames()
    result = compare_frames(reference, current, features=list(reference.columns))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == CRITICAL
    assert data["thresholds"] == {"warning": 0.1, "critical": 0.25}
    assert [f["feature"] for f in data["features"]][0] == "shifted"
    assert data["n_reference"] == data["n_current"] == len(reference)
    assert sum(b["current"] for b in data["features"][0]["bins"]) == pytest.approx(1.0)


def test_report_and_figure_show_every_feature_and_the_thresholds() -> None:
    reference, current = _frames()
    result = compare_frames(
        reference,
        current,
        features=list(reference.columns),
        reference_scores=reference["stable"],
        current_scores=current["stable"],
    )
    text = drift_report(result, context={"model": "churn-risk v3"})
    assert "**Overall status: critical**" in text
    assert "- model: churn-risk v3" in text
    assert "![PSI per feature](psi.png)" in text
    for feature in ("churn_risk", "stable", "shifted", "segment", "member"):
        assert f"| {feature} |" in text
    assert "**shifted**" in text.split("## What moved")[1]
    figure = plot_psi(result)
    (ax,) = figure.axes
    drawn = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert max(drawn, key=drawn.__getitem__) == "churn_risk (score)"  # top bar
    assert len(drawn) == 5
    lines = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert lines == [0.1, 0.25]


# --- properties -------------------------------------------------------------------------------

values = st.lists(
    st.one_of(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        st.integers(min_value=-5, max_value=5).map(float),
        st.just(float("nan")),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(reference=values, current=values, bins=st.integers(min_value=2, max_value=20))
def test_numeric_psi_is_non_negative_and_zero_on_itself(
    reference: list[float], current: list[float], bins: int
) -> None:
    drift = numeric_drift("x", np.array(reference), np.array(current), bins=bins)
    assert drift.psi >= 0.0
    assert sum(b.reference for b in drift.bins) == pytest.approx(1.0)
    assert sum(b.current for b in drift.bins) == pytest.approx(1.0)
    assert numeric_drift("x", np.array(reference), np.array(reference), bins=bins).psi == 0.0


@settings(max_examples=40, deadline=None)
@given(reference=values, current=values, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_numeric_psi_ignores_row_order(
    reference: list[float], current: list[float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    before = numeric_drift("x", np.array(reference), np.array(current)).psi
    after = numeric_drift(
        "x", rng.permutation(np.array(reference)), rng.permutation(np.array(current))
    ).psi
    assert after == pytest.approx(before, rel=1e-12, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(
    reference=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=100),
    current=st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=100),
)
def test_categorical_psi_is_non_negative_and_zero_on_itself(
    reference: list[str | None], current: list[str | None]
) -> None:
    drift = categorical_drift("x", reference, current)
    assert drift.psi >= 0.0
    assert categorical_drift("x", reference, reference).psi == 0.0
    if "d" in current:  # unseen in the reference: its share lands in (other)
        shares = {b.label: b.current for b in drift.bins}
        assert shares[OTHER] >= current.count("d") / len(current)

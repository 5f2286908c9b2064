"""Distribution drift between a reference sample (the training data) and a current one: PSI.

The population stability index of one feature compares the share of rows in each bin:

    PSI = sum over bins b of (q_b - p_b) * ln(q_b / p_b)

with p_b the reference share and q_b the current share. Every term is >= 0, so PSI >= 0, and it is
0 exactly when the shares agree. Bins:

- **numeric** features: quantile bins of the reference (deciles by default), right-closed
  (`x <= edge` goes to the lower bin), with edges taken from observed values and deduplicated, so
  ties (70 % zeros in a count) make one bin instead of several empty ones; two more bins hold the
  values below and above the reference's range, so a feature that was constant in training (0
  cancellations) and now moves drifts;
- **categorical** features (text, bool, category dtypes, or named): one bin per reference
  category (the most frequent `max_categories`), the rest and every category unseen in the
  reference pooled in `(other)`;
- in both, missing values (NaN, None) are a bin of their own, `(missing)`, so a feature that
  starts arriving empty drifts too;
- an empty bin's share is raised to `epsilon` (1e-4) on the side where it is empty, so a bin
  empty on one side gives a large but finite term instead of infinity.

Usual reading (Siddiqi, *Credit Risk Scorecards*): below 0.1 no significant change, 0.1 to 0.25 a
moderate change worth a look, 0.25 and more a significant shift. Those are the default warning
and critical thresholds (`Settings.drift_warning_psi`, `Settings.drift_critical_psi`).

Everything here is pure: frames in, a `DriftResult` (and a figure and Markdown text) out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

Status = Literal["ok", "warning", "critical"]
Kind = Literal["numeric", "categorical", "score"]
OK: Status = "ok"
WARNING: Status = "warning"
CRITICAL: Status = "critical"
STATUSES: tuple[Status, ...] = (OK, WARNING, CRITICAL)
MISSING = "(missing)"
OTHER = "(other)"
DEFAULT_BINS = 10
DEFAULT_EPSILON = 1e-4
DEFAULT_MAX_CATEGORIES = 30
SCORE_NAME = "churn_risk"


@dataclass(frozen=True)
class Thresholds:
    """PSI from which drift is a warning, and from which it is critical.

    Raises:
        ValueError: unless 0 < warning <= critical.
    """

    warning: float = 0.1
    critical: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.warning <= self.critical:
            raise ValueError(
                f"drift thresholds need 0 < warning <= critical, got warning {self.warning} "
                f"and critical {self.critical}"
            )

    def status(self, psi: float) -> Status:
        """`critical` from the critical threshold on, `warning` from the warning one, else `ok`."""
        if psi >= self.critical:
            return CRITICAL
        if psi >= self.warning:
            return WARNING
        return OK


@dataclass(frozen=True)
class Bin:
    """One bin of a feature: its label and the share of reference and current rows in it."""

    label: str
    reference: float
    current: float


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature (or of the score).

    Attributes:
        feature: Column name (`churn_risk` for the score).
        kind: "numeric", "categorical" or "score".
        psi: Population stability index (>= 0).
        status: "ok", "warning" or "critical" under the thresholds used.
        bins: Every bin with its reference and current share (shares before `epsilon`).
        missing_reference: Share of missing values in the reference.
        missing_current: Share of missing values in the current data.
    """

    feature: str
    kind: Kind
    psi: float
    status: Status
    bins: tuple[Bin, ...]
    missing_reference: float
    missing_current: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "psi": self.psi,
            "status": self.status,
            "missing_reference": self.missing_reference,
            "missing_current": self.missing_current,
            "bins": [
                {"label": b.label, "reference": b.reference, "current": b.current}
                for b in self.bins
            ],
        }


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe of `statuses` (`ok` for none)."""
    return max(statuses, key=STATUSES.index, default=OK)


@dataclass(frozen=True)
class DriftResult:
    """Per-feature PSI and status, the score's, and the overall status.

    Attributes:
        features: One entry per feature, highest PSI first (ties by name).
        score: The score distribution's drift (None when no scores were given).
        thresholds: The thresholds the statuses were decided with.
        n_reference: Rows in the reference sample.
        n_current: Rows in the current sample.
        bins: Quantile bins asked for per numeric feature (fewer where values tie).
        epsilon: Floor of a bin's share.
    """

    features: tuple[FeatureDrift, ...]
    score: FeatureDrift | None
    thresholds: Thresholds
    n_reference: int
    n_current: int
    bins: int = DEFAULT_BINS
    epsilon: float = DEFAULT_EPSILON

    @property
    def compared(self) -> tuple[FeatureDrift, ...]:
        """The score (when given) first, then the features."""
        return (*((self.score,) if self.score is not None else ()), *self.features)

    @property
    def status(self) -> Status:
        """The worst status over the features and the score."""
        return worst([d.status for d in self.compared])

    @property
    def max_psi(self) -> float:
        """The largest PSI over the features and the score (0 with nothing compared)."""
        return max((d.psi for d in self.compared), default=0.0)

    @property
    def noise_floor(self) -> float:
        """PSI expected from sampling alone, with no drift, for a feature with `bins` bins.

        Two samples of n and m rows from one distribution give, on average,
        PSI ~ (bins - 1) * (1/n + 1/m) (the chi-square approximation of PSI); a PSI near this
        value is noise, not drift. Few current rows raise it.
        """
        return (self.bins - 1) * (1 / self.n_reference + 1 / self.n_current)

    def counts(self) -> dict[Status, int]:
        """How many features (score included) have each status."""
        return {s: sum(d.status == s for d in self.compared) for s in STATUSES}

    def table(self) -> pd.DataFrame:
        """One row per feature, score first: feature, kind, psi, status, missing shares."""
        return pd.DataFrame(
            [
                {
                    "feature": d.feature,
                    "kind": d.kind,
                    "psi": d.psi,
                    "status": d.status,
                    "missing_reference": d.missing_reference,
                    "missing_current": d.missing_current,
                }
                for d in self.compared
            ],
            columns=[
                "feature",
                "kind",
                "psi",
                "status",
                "missing_reference",
                "missing_current",
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: overall status, max PSI, counts, thresholds, the score and every feature."""
        return {
            "status": self.status,
            "max_psi": self.max_psi,
            "counts": dict(self.counts()),
            "thresholds": {
                "warning": self.thresholds.warning,
                "critical": self.thresholds.critical,
            },
            "bins": self.bins,
            "epsilon": self.epsilon,
            "noise_floor": self.noise_floor,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "score": None if self.score is None else self.score.to_dict(),
            "features": [d.to_dict() for d in self.features],
        }


# --- PSI ---------------------------------------------------------------------------------------


def psi_from_counts(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    *,
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """PSI of two histograms over the same bins.

    Args:
        reference: Row count (or weight) per bin in the reference.
        current: The same for the current data, bin for bin.
        epsilon: Floor of a bin's share, so that an empty bin gives a finite term.

    Returns:
        sum_b (q_b - p_b) ln(q_b / p_b) over the shares p (reference) and q (current); >= 0.

    Raises:
        ValueError: shapes differ, a count is negative, or a side is empty.
    """
    p = np.asarray(reference, dtype=float)
    q = np.asarray(current, dtype=float)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms differ in shape: {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("bin counts must be >= 0")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("PSI needs at least one row on each side")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    p = np.maximum(p / p.sum(), epsilon)
    q = np.maximum(q / q.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def quantile_edges(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Upper edges of the quantile bins of the reference's finite values, its maximum last.

    Edges are observed values (inverted-CDF quantiles at 1/bins, 2/bins, ...), deduplicated, so
    tied values never split across bins and no bin exists that the reference cannot fill.

    Args:
        reference: Values; NaN and infinities are ignored.
        bins: Quantile bins wanted (>= 2); ties give fewer.

    Returns:
        Ascending unique edges (at most `bins`), the last one the reference maximum; empty when
        no finite value exists.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    values = np.asarray(reference, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    probabilities = np.arange(1, bins) / bins
    quantiles = np.quantile(finite, probabilities, method="inverted_cdf")
    return np.unique(np.append(quantiles, finite.max()))


def _numeric(values: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)


def _format(value: float) -> str:
    return f"{value:.4g}"


def _numeric_labels(low: float, edges: np.ndarray) -> list[str]:
    """Labels of: below the reference range, each quantile bin, above the range."""
    if edges.size == 0:
        return ["any value"]
    first = f"= {_format(low)}" if edges[0] == low else f"[{_format(low)}, {_format(edges[0])}]"
    middle = [f"({_format(a)}, {_format(b)}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [f"< {_format(low)}", first, *middle, f"> {_format(edges[-1])}"]


def _numeric_histogram(values: np.ndarray, low: float, edges: np.ndarray) -> np.ndarray:
    """Counts per bin of `_numeric_labels(low, edges)`, then the missing count."""
    missing = np.isnan(values)
    present = values[~missing]
    if edges.size == 0:
        return np.array([float(present.size), float(missing.sum())])
    # side="left" counts the edges strictly below x: x <= edge goes to the lower bin
    index = np.searchsorted(edges, present, side="left") + 1
    index[present < low] = 0
    counts = np.bincount(index, minlength=edges.size + 2).astype(float)
    return np.append(counts, float(missing.sum()))


def _drift(
    feature: str,
    kind: Kind,
    labels: Sequence[str],
    reference: np.ndarray,
    current: np.ndarray,
    *,
    epsilon: float,
    thresholds: Thresholds,
) -> FeatureDrift:
    """From per-bin counts whose last bin is `(missing)`."""
    value = psi_from_counts(reference, current, epsilon=epsilon)
    p, q = reference / reference.sum(), current / current.sum()
    return FeatureDrift(
        feature=feature,
        kind=kind,
        psi=value,
        status=thresholds.status(value),
        bins=tuple(
            Bin(label, float(a), float(b)) for label, a, b in zip(labels, p, q, strict=True)
        ),
        missing_reference=float(p[-1]),
        missing_current=float(q[-1]),
    )


def numeric_drift(
    feature: str,
    reference: pd.Series | np.ndarray,
    current: pd.Series | np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    epsilon: float = DEFAULT_EPSILON,
    thresholds: Thresholds | None = None,
    kind: Kind = "numeric",
) -> FeatureDrift:
    """PSI of a numeric feature over quantile bins of the reference, missing values apart.

    Args:
        feature: Its name.
        reference: Reference values (NaN = missing).
        current: Current values.
        bins: Quantile bins of the reference.
        epsilon: Floor of a bin's share.
        thresholds: Warning and critical PSI (defaults 0.1 and 0.25).
        kind: "numeric", or "score" for a model's score.

    Returns:
        The feature's drift.

    Raises:
        ValueError: a side has no rows.
    """
    ref, cur = _numeric(reference), _numeric(current)
    edges = quantile_edges(ref, bins)
    finite = ref[np.isfinite(ref)]
    low = float(finite.min()) if finite.size else np.nan
    return _drift(
        feature,
        kind,
        [*_numeric_labels(low, edges), MISSING],
        _numeric_histogram(ref, low, edges),
        _numeric_histogram(cur, low, edges),
        epsilon=epsilon,
        thresholds=thresholds or Thresholds(),
    )


def _as_labels(values: pd.Series | np.ndarray) -> pd.Series:
    series = pd.Series(values).reset_index(drop=True)
    missing = series.isna().to_numpy()
    text = series.astype(object).where(~missing, None).map(lambda v: None if v is None else str(v))
    return pd.Series(text.to_numpy(dtype=object), dtype=object)


def categorical_drift(
    feature: str,
    reference: pd.Series | np.ndarray,
    current: pd.Series | np.ndarray,
    *,
    epsilon: float = DEFAULT_EPSILON,
    thresholds: Thresholds | None = None,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> FeatureDrift:
    """PSI of a categorical feature by category, with `(other)` and `(missing)` bins.

    Values are compared as text (`True`, `"de"`, ...). The reference's `max_categories` most
    frequent categories get a bin each; rarer ones and any category the reference never had
    share `(other)`.

    Args:
        feature: Its name.
        reference: Reference values (None/NaN = missing).
        current: Current values.
        epsilon: Floor of a bin's share.
        thresholds: Warning and critical PSI (defaults 0.1 and 0.25).
        max_categories: Most categories with a bin of their own.

    Returns:
        The feature's drift.

    Raises:
        ValueError: a side has no rows.
    """
    if max_categories < 1:
        raise ValueError(f"max_categories must be >= 1, got {max_categories}")
    ref, cur = _as_labels(reference), _as_labels(current)
    frequent = ref.dropna().value_counts(sort=False)
    # most frequent first, ties by name, so the bins do not depend on row order
    ordered = sorted(frequent.items(), key=lambda item: (-item[1], str(item[0])))
    kept = [str(name) for name, _ in ordered[:max_categories]]
    labels = [*kept, OTHER, MISSING]
    position = {name: i for i, name in enumerate(kept)}

    def histogram(values: pd.Series) -> np.ndarray:
        counts = np.zeros(len(labels))
        for value, n in values.value_counts(dropna=False, sort=False).items():
            if value is None or (isinstance(value, float) and np.isnan(value)):
                counts[-1] += n
            else:
                counts[position.get(str(value), len(kept))] += n
        return counts

    return _drift(
        feature,
        "categorical",
        labels,
        histogram(ref),
        histogram(cur),
        epsilon=epsilon,
        thresholds=thresholds or Thresholds(),
    )


def is_categorical(series: pd.Series) -> bool:
    """Text, bool and category columns are compared by category, others by quantile bins."""
    dtype = series.dtype
    return bool(
        pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
    )


def compare_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    reference_scores: np.ndarray | pd.Series | None = None,
    current_scores: np.ndarray | pd.Series | None = None,
    thresholds: Thresholds | None = None,
    bins: int = DEFAULT_BINS,
    epsilon: float = DEFAULT_EPSILON,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    score_name: str = SCORE_NAME,
) -> DriftResult:
    """PSI of every feature, and of the score, between a reference and a current frame.

    Args:
        reference: The reference rows (e.g. the model's training rows).
        current: The current rows (e.g. the customers active at the latest date).
        features: Columns to compare; both frames must have them.
        categorical: Columns to compare by category whatever their dtype (text, bool and
            category columns always are).
        reference_scores: The model's score of each reference row (optional; with
            `current_scores`).
        current_scores: The model's score of each current row.
        thresholds: Warning and critical PSI (defaults 0.1 and 0.25).
        bins: Quantile bins per numeric feature and for the score.
        epsilon: Floor of a bin's share.
        max_categories: Most categories with a bin of their own.
        score_name: Name of the score in the result.

    Returns:
        Per-feature PSI and status (highest PSI first), the score's, and the overall status.

    Raises:
        ValueError: a frame is empty or lacks a feature, or only one side's scores are given.
    """
    limits = thresholds or Thresholds()
    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs rows on both sides: {len(reference)} reference, {len(current)} current"
        )
    for name, frame in (("reference", reference), ("current", current)):
        if missing := [c for c in features if c not in frame.columns]:
            raise ValueError(f"the {name} data lacks columns: {', '.join(missing)}")
    if (reference_scores is None) != (current_scores is None):
        raise ValueError("give the scores of both the reference and the current rows, or none")
    forced = set(categorical)
    drifts = []
    for column in features:
        ref, cur = reference[column], current[column]
        if column in forced or is_categorical(ref) or is_categorical(cur):
            drifts.append(
                categorical_drift(
                    column,
                    ref,
                    cur,
                    epsilon=epsilon,
                    thresholds=limits,
                    max_categories=max_categories,
                )
            )
        else:
            drifts.append(
                numeric_drift(column, ref, cur, bins=bins, epsilon=epsilon, thresholds=limits)
            )
    score = None
    if reference_scores is not None and current_scores is not None:
        score = numeric_drift(
            score_name,
            reference_scores,
            current_scores,
            bins=bins,
            epsilon=epsilon,
            thresholds=limits,
            kind="score",
        )
    drifts.sort(key=lambda d: (-d.psi, d.feature))
    return DriftResult(
        features=tuple(drifts),
        score=score,
        thresholds=limits,
        n_reference=len(reference),
        n_current=len(current),
        bins=bins,
        epsilon=epsilon,
    )


# --- figure and report ---------------------------------------------------------------------------

_COLOURS: Mapping[Status, str] = {OK: "#4c9a6a", WARNING: "#e0a030", CRITICAL: "#c8413b"}


def plot_psi(result: DriftResult, *, max_features: int = 40) -> Figure:
    """Horizontal bars of PSI per feature (score first, then highest PSI), threshold lines.

    Args:
        result: From `compare_frames`.
        max_features: Most features drawn (the highest PSI; the report's table lists all).

    Returns:
        The figure.
    """
    shown = [*([result.score] if result.score is not None else []), *result.features]
    shown = shown[: max_features + (result.score is not None)]
    height = 1.4 + 0.24 * max(len(shown), 1)
    fig = Figure(figsize=(7.5, height), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(shown))[::-1]
    values = [d.psi for d in shown]
    ax.barh(positions, values, color=[_COLOURS[d.status] for d in shown])
    ax.set_yticks(
        positions,
        [f"{d.feature} (score)" if d.kind == "score" else d.feature for d in shown],
        fontsize=8,
    )
    limits = result.thresholds
    ax.axvline(limits.warning, color=_COLOURS[WARNING], linestyle="--", linewidth=1)
    ax.axvline(limits.critical, color=_COLOURS[CRITICAL], linestyle="--", linewidth=1)
    top = max([*values, limits.critical]) * 1.1
    ax.set_xlim(0, top)
    for y, value in zip(positions, values, strict=True):
        ax.text(value, y, f" {value:.3f}", va="center", fontsize=7)
    hidden = len(result.features) - (len(shown) - (result.score is not None))
    more = f" ({hidden} lower not shown)" if hidden > 0 else ""
    ax.set(
        xlabel=f"PSI (warning {limits.warning:g}, critical {limits.critical:g}){more}",
        title=f"Drift per feature: {result.status}",
    )
    if not shown:
        ax.text(0.5, 0.5, "no feature compared", ha="center", transform=ax.transAxes)
    return fig


def _share(value: float) -> str:
    return f"{value:.1%}"


def drift_report(
    result: DriftResult,
    *,
    context: Mapping[str, str] | None = None,
    figure: str | None = "psi.png",
    top_bins: int = 3,
) -> str:
    """The Markdown report: status, context, thresholds, the PSI table and the largest movers.

    Args:
        result: From `compare_frames`.
        context: Lines to show first, e.g. {"model": "churn-risk v3", "as of": "2026-09-30"}.
        figure: File name of the PSI chart beside the report (None: no image).
        top_bins: Bins listed for each feature above the warning threshold.

    Returns:
        The report text.
    """
    limits = result.thresholds
    counts = result.counts()
    lines = [
        "# Drift report",
        "",
        f"**Overall status: {result.status}** (max PSI {result.max_psi:.3f}; "
        f"{counts[CRITICAL]} critical, {counts[WARNING]} warning, {counts[OK]} ok)",
        "",
    ]
    for key, value in (context or {}).items():
        lines.append(f"- {key}: {value}")
    lines += [
        f"- rows: {result.n_reference:,} reference, {result.n_current:,} current",
        f"- thresholds: warning from PSI {limits.warning:g}, critical from {limits.critical:g}",
        f"- bins: {result.bins} reference quantiles per numeric feature (ties merged), one per "
        f"category, missing values apart; empty bins count as a share of {result.epsilon:g}",
        f"- sampling noise: with these row counts a feature that has not drifted shows a PSI of "
        f"about {result.noise_floor:.3f} on average (chi-square approximation)",
        "",
    ]
    if figure:
        lines += [f"![PSI per feature]({figure})", ""]
    lines += [
        "| feature | kind | PSI | status | missing (reference → current) |",
        "|---|---|---:|---|---|",
    ]
    for d in result.compared:
        lines.append(
            f"| {d.feature} | {d.kind} | {d.psi:.4f} | {d.status} | "
            f"{_share(d.missing_reference)} → {_share(d.missing_current)} |"
        )
    drifted = [d for d in result.compared if d.status != OK]
    if drifted:
        lines += ["", "## What moved", ""]
        for d in drifted:
            movers = sorted(d.bins, key=lambda b: -abs(b.current - b.reference))[:top_bins]
            moved = "; ".join(
                f"{b.label}: {_share(b.reference)} → {_share(b.current)}" for b in movers
            )
            lines.append(f"- **{d.feature}** (PSI {d.psi:.3f}, {d.status}): {moved}")
    return "\n".join(lines) + "\n"

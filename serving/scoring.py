"""Scoring and offers: features -> calibrated risk, band, reasons, CLV; next best offer.

Two layers:

- **Frame functions** (`calibrated_risk`, `reason_lists`, `predict_clv`, `offer_values`,
  `profiles`, `score_customers`): vectorised, pure, shared by the online service and the batch
  run (`retain score`), so both score the same way. They call the LightGBM boosters directly
  (`num_threads` chosen by the caller: 1 when serving) and never the pyfunc.
- **`ScoringService`**: what the routes call. It takes the customer's cached feature row (see
  `serving.online`), scores it with the current `ModelSet`, applies the offer rules and logs
  decisions.

Per cached block of feature rows and per model set, the expensive, deterministic parts are
memoised (`BlockScores`): the encoded matrices, CLV, the next-offer value of every action and the
static eligibility. Reason codes (TreeSHAP, ~3 ms a row) are computed per row on first use, and
in the background for every row. The churn risk itself is one booster call per request.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import pandas as pd
from starlette.concurrency import run_in_threadpool

from features.contract import DEFAULT_LANGUAGE, NO_OFFER
from features.definitions import CHURN_FEATURES
from features.offers import Offer
from features.settings import Settings
from serving.decision_log import DecisionLog
from serving.models import CHURN, CLV, NEXT_OFFER, ModelHolder, ModelSet, ReloadSignal
from serving.online import (
    Entry,
    FeatureBlock,
    FeatureCache,
    recent_contacts,
    signature_and_contacts,
    utc_now,
)
from serving.schemas import (
    AtRiskItem,
    AtRiskPage,
    ChurnBatchOut,
    ChurnScore,
    KpiRow,
    Kpis,
    OfferAction,
    Recommendation,
    RecommendIn,
    RiskBand,
)
from serving.store import Decision, Store, new_decision
from training.encoding import BIAS
from training.policy import eligibility
from training.reasons import reason_codes

log = logging.getLogger("retain.serving.scoring")
T = TypeVar("T")

TOP_REASONS: Final = 3
CONTACT_WINDOW_DAYS: Final = 30  # the catalog's `max_per_customer_30d`
SCORES_DIR: Final = "scores"
LATEST: Final = "latest"
SCORE_COLUMNS: Final = (
    "customer_id",
    "segment",
    "language",
    "risk",
    "band",
    "reason_1",
    "reason_2",
    "reason_3",
    "clv",
    "best_action",
    "best_action_value",
)


# --- errors the routes turn into problems ---------------------------------------------------


class ScoringError(Exception):
    """An error with an HTTP status and a clear detail."""

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownCustomer(ScoringError):
    status = 404

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer {customer_id[:64]!r}")


class ModelUnavailable(ScoringError):
    status = 503


class NoScores(ScoringError):
    status = 404


class TooMany(ScoringError):
    status = 413


def aware(stamp: pd.Timestamp) -> datetime:
    """A naive UTC timestamp (how times are kept) as an aware datetime (how the API sends them)."""
    return stamp.tz_localize("UTC").to_pydatetime()


# --- frame functions (online and batch) -----------------------------------------------------


def risk_bands(risk: np.ndarray, *, medium: float, high: float) -> np.ndarray:
    """Risk band of each row: low below `medium`, high from `high`, medium between."""
    return np.where(risk >= high, "high", np.where(risk >= medium, "medium", "low"))


def risk_band(risk: float, *, medium: float, high: float) -> RiskBand:
    if risk >= high:
        return "high"
    return "medium" if risk >= medium else "low"


def calibrated_risk(model: Any, X: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """P(churn) of encoded rows: the booster's raw probability through the calibrator."""
    raw = np.asarray(model.booster_.predict(X, num_threads=threads), dtype=float)
    return _isotonic(model.calibrator_, raw)


def _isotonic(calibrator: Any, raw: np.ndarray) -> np.ndarray:
    # `IsotonicRegression.predict` is clip + its fitted interpolant `f_`, behind input checks
    # that cost more than a one-row prediction; the same two steps, without the checks.
    f = getattr(calibrator, "f_", None)
    if f is None or getattr(calibrator, "out_of_bounds", None) != "clip":
        return np.asarray(calibrator.predict(raw), dtype=float)
    return np.asarray(f(np.clip(raw, calibrator.X_min_, calibrator.X_max_)), dtype=float)


def reason_lists(
    model: Any,
    X: np.ndarray,
    features: pd.DataFrame,
    *,
    top_k: int = TOP_REASONS,
    threads: int = 1,
) -> list[list[str]]:
    """Reason phrases per row: the top-k features pushing its risk up (TreeSHAP)."""
    if len(X) == 0:
        return []
    contributions = model.booster_.predict(X, pred_contrib=True, num_threads=threads)
    frame = pd.DataFrame(
        np.asarray(contributions), columns=[*model.feature_names_in_, BIAS]
    ).set_axis(pd.RangeIndex(len(X)), axis=0)
    codes = reason_codes(frame, features.reset_index(drop=True), top_k=top_k)
    phrases = codes[[f"reason_{j + 1}" for j in range(top_k)]].to_numpy(dtype=object)
    return [[p for p in row if isinstance(p, str)] for row in phrases]


def predict_clv(model: Any, X: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Predicted revenue over the next 365 days of encoded rows."""
    return np.asarray(model.booster_.predict(X, num_threads=threads), dtype=float)


def profiles(customers: pd.DataFrame, as_of: pd.Timestamp | np.ndarray) -> pd.DataFrame:
    """The offer rules' inputs per customer (indexed by customer_id), tenure at `as_of` (one
    time, or one per row)."""
    columns = ["segment", "country", "language", "loyalty_member", "marketing_consent"]
    out = customers[columns].copy()
    signup = pd.to_datetime(customers["signup_date"]).to_numpy()
    at = np.datetime64(as_of.to_datetime64()) if isinstance(as_of, pd.Timestamp) else as_of
    out["tenure_days"] = (at - signup) / np.timedelta64(1, "D")
    out.index = pd.Index(customers["customer_id"].astype(str).to_numpy(), name="customer_id")
    return out


def offer_values(
    model: Any, features: pd.DataFrame, clv: np.ndarray, offers: list[Offer]
) -> pd.DataFrame:
    """Expected net value of each action (`none` = 0) per row: `NextOfferModel.values` with
    CLV floored at 0, as in training."""
    frame = features.reset_index(drop=True)
    value = pd.Series(np.clip(clv, 0.0, None), index=frame.index)
    return model.values(frame, value, offers)


def epsilon_greedy(
    values: np.ndarray, allowed: np.ndarray, *, epsilon: float, draw: float
) -> tuple[np.ndarray, int, int]:
    """`training.policy.exploration_probabilities` and `explore` for one customer, in plain
    Python over a handful of actions (numpy's per-call overhead and pandas' ~3 ms a row would
    be most of a recommendation's cost).

    Returns:
        The probability of every action, the index of the action a uniform `draw` in [0, 1)
        picks, and the index of the greedy (best eligible) action (the first of equals).
    """
    ok = allowed.tolist()
    worth = [v if k and v == v else -math.inf for v, k in zip(values.tolist(), ok, strict=True)]
    best = max(range(len(worth)), key=worth.__getitem__)
    share = epsilon * (1 / sum(ok))  # the policy's arithmetic, so that both agree exactly
    probabilities = [share if k else 0.0 for k in ok]
    probabilities[best] = (1 - epsilon) + probabilities[best]
    column, total = 0, 0.0
    for p in probabilities[:-1]:  # the first action whose cumulative probability reaches draw
        total += p
        if draw <= total:
            break
        column += 1
    return np.array(probabilities), column, best


def decision_time() -> datetime:
    """Now as naive UTC to the microsecond, as `utc_now`, in the standard library's type: the
    offer path needs no pandas timestamp, and making one costs more than the rest of a rule."""
    return datetime.now(UTC).replace(tzinfo=None)


def _contacts_since(now: datetime) -> datetime:
    return now - timedelta(days=CONTACT_WINDOW_DAYS)


def _under_caps(
    catalog: Mapping[str, Offer], actions: Sequence[str], counts: Mapping[str, int]
) -> np.ndarray:
    # The contact-cap rule of `training.policy.eligibility`, for one customer's live counts.
    caps = [catalog[a].max_per_customer_30d if a in catalog else None for a in actions]
    return np.array([c is None or counts.get(a, 0) < c for a, c in zip(actions, caps, strict=True)])


def reason_columns(
    model: Any,
    X: np.ndarray,
    features: pd.DataFrame,
    *,
    top_k: int = TOP_REASONS,
    threads: int = 1,
) -> list[np.ndarray]:
    """`reason_lists` as `top_k` object columns (None where a row has fewer reasons): the batch
    form, without a Python list per row."""
    if len(X) == 0:
        return [np.full(0, None, dtype=object) for _ in range(top_k)]
    contributions = model.booster_.predict(X, pred_contrib=True, num_threads=threads)
    frame = pd.DataFrame(
        np.asarray(contributions), columns=[*model.feature_names_in_, BIAS], copy=False
    )
    codes = reason_codes(frame, features.reset_index(drop=True), top_k=top_k)
    return [codes[f"reason_{j + 1}"].to_numpy(dtype=object) for j in range(top_k)]


def _same_encoding(a: Any, b: Any) -> bool:
    # The CLV model usually shares the churn model's features and learnt categories; then the
    # churn model's matrix serves both.
    return bool(
        list(a.feature_names_in_) == list(b.feature_names_in_) and a.categories_ == b.categories_
    )


class _Stages:
    """Wall and CPU seconds per stage, into `timings` (when the caller wants them)."""

    def __init__(self, timings: dict[str, dict[str, float]] | None) -> None:
        self.timings = timings
        self._started = (time.perf_counter(), time.process_time())

    def done(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        if self.timings is not None:
            self.timings[name] = {
                "wall_s": round(wall - self._started[0], 3),
                "cpu_s": round(cpu - self._started[1], 3),
            }
        self._started = (wall, cpu)


def score_customers(
    features: pd.DataFrame,
    customers: pd.DataFrame,
    models: ModelSet,
    offers: list[Offer],
    *,
    as_of: pd.Timestamp,
    medium: float,
    high: float,
    recent: pd.DataFrame | None = None,
    threads: int = 1,
    reasons_from: float | None = 0.0,
    timings: dict[str, dict[str, float]] | None = None,
) -> pd.DataFrame:
    """Batch scores: risk, band, reasons, CLV and the best eligible action of each row.

    Args:
        features: `build_features` rows (customer_id, cutoff, features).
        customers: The contract rows of the same customers (any order).
        models: Churn model required; CLV and next-offer optional (columns left empty).
        offers: The catalog (for the best action).
        as_of: Scoring time (tenure for the rules).
        medium, high: Risk band thresholds.
        recent: Contacts per customer and offer in the 30 days before `as_of` (contact caps).
        threads: LightGBM threads.
        reasons_from: Reason codes for the rows whose risk is at least this (0: every row;
            None: none). TreeSHAP is most of the cost of a batch (~2 ms a row on one core for
            300 trees of 31 leaves); the rows left out get no reasons.
        timings: When given, filled with wall and CPU seconds per stage.

    Returns:
        One row per feature row, columns `SCORE_COLUMNS`.
    """
    churn = models.churn
    if churn is None:
        raise ModelUnavailable(f"no {CHURN} model: {models.errors.get(CHURN, 'not loaded')}")
    stages = _Stages(timings)
    frame = features.reset_index(drop=True)
    n = len(frame)
    X = churn.model.encode(frame)
    stages.done("encode")
    risk = calibrated_risk(churn.model, X, threads=threads)
    stages.done("risk")
    reasons = [np.full(n, None, dtype=object) for _ in range(TOP_REASONS)]
    if reasons_from is not None:
        chosen = np.flatnonzero(risk >= reasons_from)
        if len(chosen) == n:
            reasons = reason_columns(churn.model, X, frame, threads=threads)
        elif len(chosen):
            found = reason_columns(churn.model, X[chosen], frame.iloc[chosen], threads=threads)
            for column, phrases in zip(reasons, found, strict=True):
                column[chosen] = phrases
    stages.done("reasons")
    ids = frame["customer_id"].astype(str).to_numpy()
    info = customers.set_index("customer_id").reindex(ids)
    out = pd.DataFrame(
        {
            "customer_id": ids,
            "segment": info["segment"].to_numpy(),
            "language": info["language"].to_numpy(),
            "risk": risk,
            "band": risk_bands(risk, medium=medium, high=high),
            **{f"reason_{j + 1}": reasons[j] for j in range(TOP_REASONS)},
            "clv": np.full(n, np.nan),
            "best_action": np.full(n, None, dtype=object),
            "best_action_value": np.full(n, np.nan),
        }
    )
    if models.clv is not None:
        clv_model = models.clv.model
        clv_X = X if _same_encoding(churn.model, clv_model) else clv_model.encode(frame)
        clv = predict_clv(clv_model, clv_X, threads=threads)
        out["clv"] = clv
        stages.done("clv")
        if models.next_offer is not None and offers:
            values = offer_values(models.next_offer.model, frame, clv, offers)
            stages.done("offer_values")
            rules = eligibility(profiles(info.reset_index(), as_of), offers, recent)
            allowed = rules[values.columns].to_numpy(dtype=bool)
            matrix = values.to_numpy(dtype=float)
            # `best_actions` (idxmax over the allowed values) without pandas' row-wise idxmax
            masked = np.where(allowed, np.nan_to_num(matrix, nan=-np.inf), -np.inf)
            column = np.argmax(masked, axis=1)
            out["best_action"] = values.columns.to_numpy(dtype=object)[column]
            out["best_action_value"] = matrix[np.arange(n), column]
            stages.done("best_action")
    return out[list(SCORE_COLUMNS)]


# --- per block memo ---------------------------------------------------------------------------


@dataclass(eq=False)
class BlockScores:
    """What one model set derives from one feature block (see the module docstring)."""

    generation: int
    churn_X: np.ndarray | None = None
    clv: np.ndarray | None = None
    profiles: pd.DataFrame | None = None
    languages: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    values: np.ndarray | None = None
    eligible: np.ndarray | None = None
    reasons: list[list[str] | None] = field(default_factory=list)
    offers_ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def block_scores(block: FeatureBlock, models: ModelSet) -> BlockScores:
    """The memo of `block` for `models`, created with its cheap parts on first use."""
    memo = block.memo.get(models.generation)
    if memo is not None:
        return memo
    with block.lock:
        memo = block.memo.get(models.generation)
        if memo is not None:
            return memo
        scores = BlockScores(generation=models.generation, reasons=[None] * len(block))
        if models.churn is not None:
            scores.churn_X = models.churn.model.encode(block.features)
        if models.clv is not None:
            scores.clv = predict_clv(models.clv.model, models.clv.model.encode(block.features))
        scores.profiles = profiles(block.customers, block.cutoffs())
        languages = block.customers["language"].astype(object).to_numpy()
        scores.languages = [
            str(lang) if isinstance(lang, str) and lang else DEFAULT_LANGUAGE for lang in languages
        ]
        for stale in [g for g in block.memo if g < models.generation - 1]:
            del block.memo[stale]
        block.memo[models.generation] = scores
        return scores


def take_scores(
    sources: list[tuple[FeatureBlock, int]], generation: int, *, offers: bool
) -> BlockScores | None:
    """The `BlockScores` of rows taken from other blocks, in order, from their memos for
    `generation` (None when a source has none, or lacks offer values that are wanted)."""
    groups: dict[int, tuple[BlockScores, list[int]]] = {}
    for block, row in sources:
        memo = block.memo.get(generation)
        if not isinstance(memo, BlockScores) or memo.churn_X is None:
            return None
        if offers and not memo.offers_ready:
            return None
        groups.setdefault(id(block), (memo, []))[1].append(row)
    parts = list(groups.values())
    if not parts or len({tuple(m.actions) for m, _ in parts}) > 1:
        return None
    if any(m.clv is None for m, _ in parts) or any(m.profiles is None for m, _ in parts):
        return None

    def stack(name: str) -> np.ndarray:
        arrays = [getattr(m, name) for m, _ in parts]
        return np.concatenate([a[rows] for a, (_, rows) in zip(arrays, parts, strict=True)])

    frames: list[pd.DataFrame] = [m.profiles for m, _ in parts if m.profiles is not None]
    taken = BlockScores(
        generation=generation,
        churn_X=stack("churn_X"),
        clv=stack("clv"),
        profiles=pd.concat([f.iloc[rows] for f, (_, rows) in zip(frames, parts, strict=True)]),
        languages=[m.languages[r] for m, rows in parts for r in rows],
        actions=list(parts[0][0].actions),
        reasons=[m.reasons[r] for m, rows in parts for r in rows],
    )
    if offers:
        taken.values, taken.eligible = stack("values"), stack("eligible")
        taken.offers_ready = True
    return taken


def ensure_offer_values(
    block: FeatureBlock, scores: BlockScores, models: ModelSet, offers: list[Offer]
) -> None:
    """Next-offer values and static eligibility of every row of the block (once)."""
    if scores.offers_ready:
        return
    nbo, clv = models.next_offer, models.clv
    if nbo is None or clv is None or scores.clv is None or scores.profiles is None:
        return
    with scores.lock:
        if scores.offers_ready:
            return
        values = offer_values(nbo.model, block.features, scores.clv, offers)
        rules = eligibility(scores.profiles, offers)
        actions = [str(c) for c in values.columns]
        scores.eligible = rules[actions].to_numpy(dtype=bool)
        scores.values = values.to_numpy(dtype=float)
        scores.actions = actions
        scores.offers_ready = True


def ensure_reasons(
    block: FeatureBlock, scores: BlockScores, models: ModelSet, rows: Sequence[int]
) -> None:
    """Reason phrases of `rows` (those not computed yet)."""
    churn = models.churn
    if churn is None or scores.churn_X is None:
        return
    todo = [r for r in rows if scores.reasons[r] is None]
    if not todo:
        return
    phrases = reason_lists(churn.model, scores.churn_X[todo], block.features.iloc[todo])
    for row, found in zip(todo, phrases, strict=True):
        scores.reasons[row] = found


# --- batch runs on disk (`retain score`) ---------------------------------------------------


def scores_root(settings: Settings) -> Path:
    return settings.data_dir / SCORES_DIR


def latest_run(settings: Settings) -> Path | None:
    """The directory of the latest batch scoring run, from the `latest` pointer."""
    pointer = scores_root(settings) / LATEST
    try:
        name = pointer.read_text().strip()
    except OSError:
        return None
    run = scores_root(settings) / name
    return run if (run / "scores.parquet").exists() else None


class AtRiskSource:
    """The latest batch scores, re-read when the pointer or the file changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: tuple[Path, float, pd.DataFrame, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def frame(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        run = latest_run(self.settings)
        if run is None:
            raise NoScores(
                "no batch scoring run yet: run `retain score --as-of DATE` "
                f"(scores go to {scores_root(self.settings)})"
            )
        path = run / "scores.parquet"
        mtime = path.stat().st_mtime
        loaded = self._loaded
        if loaded is not None and loaded[0] == path and loaded[1] == mtime:
            return loaded[2], loaded[3]
        with self._lock:
            frame = pd.read_parquet(path).sort_values(
                ["risk", "customer_id"], ascending=[False, True], kind="stable"
            )
            summary_path = run / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
            summary.setdefault("as_of", run.name)
            self._loaded = (path, mtime, frame.reset_index(drop=True), summary)
            return self._loaded[2], self._loaded[3]


def _none_if_nan(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def at_risk_items(frame: pd.DataFrame) -> list[AtRiskItem]:
    items = []
    for record in frame.to_dict("records"):
        reasons = [record.get(f"reason_{j + 1}") for j in range(TOP_REASONS)]
        items.append(
            AtRiskItem(
                customer_id=str(record["customer_id"]),
                segment=_none_if_nan(record.get("segment")),
                risk=float(record["risk"]),
                band=record["band"],
                reasons=[r for r in reasons if isinstance(r, str)],
                clv=_none_if_nan(record.get("clv")),
                best_action=_none_if_nan(record.get("best_action")),
                best_action_value=_none_if_nan(record.get("best_action_value")),
            )
        )
    return items


# --- KPIs --------------------------------------------------------------------------------------


class KpiCache:
    """`training.kpis.kpis` over the whole store, recomputed at most every `ttl_seconds`."""

    def __init__(self, store: Store, *, ttl_seconds: float, horizon_days: int) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.horizon_days = horizon_days
        self._value: tuple[float, pd.Timestamp, pd.DataFrame] | None = None
        self._lock = threading.Lock()

    def table(self) -> tuple[pd.Timestamp, pd.DataFrame]:
        value = self._value
        if value is not None and time.monotonic() - value[0] < self.ttl_seconds:
            return value[1], value[2]
        with self._lock:  # one computation at a time; the others wait and reuse it
            value = self._value
            if value is not None and time.monotonic() - value[0] < self.ttl_seconds:
                return value[1], value[2]
            from training.kpis import kpis

            customers = self.store.customers_frame()
            columns = ("customer_id", "timestamp", "event_type", "amount", "score")
            events = self.store.events_frame(None, columns)
            table = kpis(customers, events, horizon_days=self.horizon_days)
            self._value = (time.monotonic(), utc_now(), table)
            return self._value[1], table


# --- the service -------------------------------------------------------------------------------


class ScoringService:
    """What the scoring and offer routes call; one per process, built in the app's lifespan."""

    def __init__(
        self,
        *,
        store: Store,
        models: ModelHolder,
        cache: FeatureCache,
        offers: list[Offer],
        settings: Settings,
    ) -> None:
        self.store = store
        self.models = models
        self.cache = cache
        self.offers = offers
        self.settings = settings
        self.at_risk_source = AtRiskSource(settings)
        self.kpi_cache = KpiCache(
            store,
            ttl_seconds=settings.kpi_cache_seconds,
            horizon_days=settings.churn_horizon_days,
        )
        self._catalog = {offer.offer_id: offer for offer in offers}
        self._capped = [o.offer_id for o in offers if o.max_per_customer_30d is not None]
        self._reasons_thread: threading.Thread | None = None
        self.decision_log = DecisionLog(store)
        self.reload_signal: ReloadSignal | None = None
        self.settle = False
        # An embedded SQLite read takes ~0.1 ms, less than a hop to the thread pool; a network
        # database's round trip would stall every request waiting on the event loop.
        self._reads_inline = store.engine.dialect.name == "sqlite"

    async def _read(self, read: Callable[..., T], *args: Any) -> T:
        """A store read from a coroutine: inline on SQLite, in the thread pool otherwise."""
        if self._reads_inline:
            return read(*args)
        return await run_in_threadpool(read, *args)

    # --- churn ---------------------------------------------------------------------------------

    def churn(self, customer_id: str) -> ChurnScore:
        """Risk, band, reasons and CLV of one customer, from features as of now."""
        models = self.models.current
        self._require_churn(models)
        entry = self.cache.entry(customer_id)
        if entry is None:
            raise UnknownCustomer(customer_id)
        return self._churn_score(entry, models)

    async def churn_async(self, customer_id: str) -> ChurnScore:
        """`churn`, answered on the event loop when everything is cached (no thread hop, which
        costs more than the scoring itself); a stale row is awaited from the cache's compute
        thread (no thread held while it waits), missing reasons computed in the thread pool."""
        models = self.models.current
        self._require_churn(models)
        known, entry = await self._read(self.cache.peek, customer_id)
        if not known:
            raise UnknownCustomer(customer_id)
        if entry is None:
            entry = (await self.cache.compute_soon_async([customer_id])).get(customer_id)
            if entry is None:
                raise UnknownCustomer(customer_id)
        scores = entry.block.memo.get(models.generation)
        if isinstance(scores, BlockScores) and scores.reasons[entry.row] is not None:
            return self._churn_score(entry, models)
        return await run_in_threadpool(self._churn_score, entry, models)

    def churn_many(self, customer_ids: Sequence[str]) -> ChurnBatchOut:
        """Scores of many customers; unknown ids are listed, not failed on."""
        if len(customer_ids) > self.settings.max_batch_customers:
            raise TooMany(f"at most {self.settings.max_batch_customers} customers per request")
        models = self.models.current
        self._require_churn(models)
        ids = list(dict.fromkeys(customer_ids))
        entries = self.cache.entries(ids)
        known = [e for e in entries.values() if e is not None]
        by_block: dict[int, list[Entry]] = {}
        for entry in known:
            by_block.setdefault(id(entry.block), []).append(entry)
        for group in by_block.values():
            scores = block_scores(group[0].block, models)
            ensure_reasons(group[0].block, scores, models, [e.row for e in group])
        return ChurnBatchOut(
            scores=[self._churn_score(e, models) for e in known],
            unknown=[i for i, e in entries.items() if e is None],
        )

    def _require_churn(self, models: ModelSet) -> None:
        if models.churn is None:
            why = models.errors.get(CHURN, "not loaded")
            raise ModelUnavailable(f"no {CHURN} model is loaded ({why}); see GET /readyz")

    def _churn_score(self, entry: Entry, models: ModelSet) -> ChurnScore:
        churn = models.churn
        assert churn is not None
        scores = block_scores(entry.block, models)
        assert scores.churn_X is not None
        row = entry.row
        risk = float(calibrated_risk(churn.model, scores.churn_X[row : row + 1])[0])
        ensure_reasons(entry.block, scores, models, [row])
        s = self.settings
        clv = models.clv
        return ChurnScore(
            customer_id=entry.customer_id,
            risk=risk,
            band=risk_band(risk, medium=s.risk_band_medium, high=s.risk_band_high),
            reasons=scores.reasons[row] or [],
            clv=float(scores.clv[row]) if scores.clv is not None else None,
            as_of=aware(entry.as_of),
            horizon_days=s.churn_horizon_days,
            feature_set=CHURN_FEATURES.id,
            models={CHURN: str(churn.version), CLV: None if clv is None else str(clv.version)},
        )

    # --- offers --------------------------------------------------------------------------------

    def recommend(self, request: RecommendIn) -> Recommendation:
        """Top-k actions for a customer, one chosen epsilon-greedily and logged as a decision."""
        models = self.models.current
        self._check_offers(models, request)
        entry = self.cache.entry(request.customer_id)
        if entry is None:
            raise UnknownCustomer(request.customer_id)
        decision, answer = self._decide(entry, models, request)
        self.decision_log.record(decision)
        return answer

    async def recommend_async(self, request: RecommendIn) -> Recommendation:
        """`recommend`, on the event loop when the customer's row and values are cached (the
        decision's commit is awaited, not waited for in a thread), else in the thread pool."""
        models = self.models.current
        self._check_offers(models, request)
        now = decision_time()
        signature, counts = await self._read(
            signature_and_contacts,
            self.store,
            request.customer_id,
            self._capped,
            _contacts_since(now),
        )
        if signature is None:
            raise UnknownCustomer(request.customer_id)
        entry = self.cache.lookup(request.customer_id, signature)
        if entry is None:
            entry = (await self.cache.compute_soon_async([request.customer_id])).get(
                request.customer_id
            )
            if entry is None:
                raise UnknownCustomer(request.customer_id)
            # The wait may have been long: count the contacts as of now.
            now = decision_time()
            counts = await self._read(
                recent_contacts, self.store, request.customer_id, self._capped, _contacts_since(now)
            )
        scores = entry.block.memo.get(models.generation)
        if isinstance(scores, BlockScores) and scores.offers_ready:
            decision, answer = self._decide(entry, models, request, now=now, counts=counts)
        else:  # the model results of a new block: encoding, values (milliseconds of pandas)
            decision, answer = await run_in_threadpool(
                self._decide, entry, models, request, now=now, counts=counts
            )
        await self.decision_log.record_async(decision)
        return answer

    def _check_offers(self, models: ModelSet, request: RecommendIn) -> None:
        nbo, clv = models.next_offer, models.clv
        for name, model in ((NEXT_OFFER, nbo), (CLV, clv)):
            if model is None:
                why = models.errors.get(name, "not loaded")
                raise ModelUnavailable(
                    f"offers are unavailable: no {name} model is loaded ({why}); "
                    "see GET /readyz, then POST /v1/admin/reload once it is registered"
                )
        assert nbo is not None and clv is not None
        if not self.offers:
            raise ModelUnavailable(
                "offers are unavailable: no offers catalog is configured (RETAIN_OFFERS_PATH)"
            )
        if request.k > self.settings.max_recommendations:
            raise TooMany(f"at most {self.settings.max_recommendations} actions per request")

    def _decide(
        self,
        entry: Entry,
        models: ModelSet,
        request: RecommendIn,
        *,
        now: datetime | None = None,
        counts: dict[str, int] | None = None,
    ) -> tuple[Decision, Recommendation]:
        """The decision to log and the answer to send once it is logged (`counts`: the contacts
        since `now` - 30 days, when already read)."""
        nbo, clv = models.next_offer, models.clv
        assert nbo is not None and clv is not None
        block, row = entry.block, entry.row
        scores = block_scores(block, models)
        ensure_offer_values(block, scores, models, self.offers)
        assert scores.values is not None and scores.eligible is not None
        actions = scores.actions
        own_language = scores.languages[row]
        language = request.context.language or own_language
        if language != own_language and scores.profiles is not None:
            profile = scores.profiles.iloc[[row]].assign(language=language)
            allowed = eligibility(profile, self.offers)[actions].to_numpy(dtype=bool)[0]
        else:
            allowed = scores.eligible[row]
        if now is None or counts is None:
            now = decision_time()
            counts = recent_contacts(
                self.store, entry.customer_id, self._capped, _contacts_since(now)
            )
        allowed = allowed & _under_caps(self._catalog, actions, counts)

        epsilon = self.settings.exploration_epsilon
        row_values = scores.values[row]
        probability, column, best = epsilon_greedy(
            row_values, allowed, epsilon=epsilon, draw=random.random()
        )
        chosen, propensity, greedy = actions[column], float(probability[column]), actions[best]
        value_of = dict(zip(actions, row_values.tolist(), strict=True))
        chance = dict(zip(actions, probability.tolist(), strict=True))
        candidates = sorted(
            (a for a, ok in zip(actions, allowed.tolist(), strict=True) if ok),
            key=lambda a: -value_of[a],
        )
        versions = {
            CHURN: None if models.churn is None else str(models.churn.version),
            CLV: str(clv.version),
            NEXT_OFFER: str(nbo.version),
        }
        context = {
            "channel": request.context.channel,
            "language": language,
            "as_of": entry.as_of.isoformat(),
            "epsilon": epsilon,
            "explored": chosen != greedy,
            "models": versions,
            "feature_set": CHURN_FEATURES.id,
        }
        logged = [
            {"offer_id": a, "expected_value": value_of[a], "probability": chance[a]}
            for a in candidates
        ]
        decision = new_decision(
            customer_id=entry.customer_id,
            offer_id=chosen,
            model_version=f"{NEXT_OFFER}:{nbo.version}",
            propensity=propensity,
            expected_value=value_of[chosen],
            context=context,
            candidates=logged,
            created_at=now,
        )
        shown = [chosen, *(a for a in candidates if a != chosen)][: request.k]
        return decision, Recommendation(
            decision_id=decision.decision_id,
            customer_id=entry.customer_id,
            offer_id=chosen,
            propensity=propensity,
            explored=chosen != greedy,
            language=language,
            channel=request.context.channel,
            actions=[self._action(a, value_of[a], chance[a], language) for a in shown],
            as_of=aware(entry.as_of),
            feature_set=CHURN_FEATURES.id,
            models=versions,
        )

    def _action(self, action: str, value: float, probability: float, language: str) -> OfferAction:
        offer = self._catalog.get(action)
        return OfferAction(
            offer_id=action,
            kind=offer.kind if offer is not None else NO_OFFER,
            expected_value=value,
            probability=probability,
            message=offer.message_for(language) if offer is not None else None,
            marketing=offer.marketing if offer is not None else False,
        )

    # --- batch results and KPIs ----------------------------------------------------------------

    def at_risk(
        self, *, min_risk: float | None, segment: str | None, limit: int, offset: int
    ) -> tuple[AtRiskPage, pd.DataFrame]:
        """One page of the latest batch run's customers at or above `min_risk`."""
        frame, summary = self.at_risk_source.frame()
        threshold = self.settings.risk_band_high if min_risk is None else min_risk
        chosen = frame[frame["risk"].to_numpy() >= threshold]
        if segment is not None:
            chosen = chosen[chosen["segment"].astype(object).to_numpy() == segment]
        page = chosen.iloc[offset : offset + limit]
        return (
            AtRiskPage(
                as_of=str(summary.get("as_of")),
                min_risk=threshold,
                segment=segment,
                total=len(chosen),
                limit=limit,
                offset=offset,
                models=summary.get("models", {}),
                items=at_risk_items(page),
            ),
            page,
        )

    def kpis(self, *, dimension: str, metric: str | None, periods: int) -> Kpis:
        """Business KPIs of the store's data (cached for `kpi_cache_seconds`)."""
        computed_at, table = self.kpi_cache.table()
        chosen = table[table["dimension"] == dimension]
        if metric is not None:
            chosen = chosen[chosen["metric"] == metric]
        recent = sorted(chosen["period"].unique())[-periods:]
        chosen = chosen[chosen["period"].isin(recent)]
        rows = [
            KpiRow(
                period=pd.Timestamp(r["period"]).date(),
                dimension=str(r["dimension"]),
                group=str(r["group"]),
                metric=str(r["metric"]),
                value=None if math.isnan(r["value"]) else float(r["value"]),
                n=int(r["n"]),
            )
            for r in chosen.to_dict("records")
        ]
        return Kpis(computed_at=aware(computed_at), rows=rows)

    # --- warm-up and model swaps ---------------------------------------------------------------

    def precompute(self, block: FeatureBlock, models: ModelSet | None = None) -> None:
        """Everything but the reasons, for one block (background warm-up and model swaps)."""
        models = models or self.models.current
        scores = block_scores(block, models)
        if self.offers:
            ensure_offer_values(block, scores, models, self.offers)

    def carry(self, merged: FeatureBlock, sources: list[tuple[FeatureBlock, int]]) -> None:
        """Before `merged` replaces the blocks its rows come from (`FeatureCache.compact`): its
        model results, taken row by row from theirs (every result is per row), or computed when
        some source has none for the current models; reason codes already computed are kept."""
        models = self.models.current
        taken = take_scores(sources, models.generation, offers=bool(self.offers))
        if taken is not None and len(taken.reasons) == len(merged):
            with merged.lock:
                merged.memo.setdefault(models.generation, taken)
            return
        self.precompute(merged, models)
        scores = block_scores(merged, models)
        for row, (block, old) in enumerate(sources):
            previous = block.memo.get(models.generation)
            if isinstance(previous, BlockScores) and previous.reasons[old] is not None:
                scores.reasons[row] = previous.reasons[old]

    def prepare(self, models: ModelSet) -> None:
        """Before a swap: precompute the new set's scores of every cached block."""
        for block in self.cache.blocks():
            try:
                self.precompute(block, models)
            except Exception:
                log.exception("precomputing a block for the new models failed")

    def fill_reasons(self, batch: int = 256, *, paced: bool = False) -> None:
        """Reason codes of every cached row, in batches (stops when the models change). `paced`:
        after each batch, pause as long as it took, so that a refill after a model swap takes at
        most half a core from the requests (which compute a missing row's reasons themselves)."""
        if not self.settings.feature_warm_reasons:
            return
        generation = self.models.current.generation
        for block in self.cache.blocks():
            models = self.models.current
            if models.generation != generation or self.cache.stopping:
                return
            scores = block_scores(block, models)
            missing = [r for r, found in enumerate(scores.reasons) if found is None]
            for start in range(0, len(missing), batch):
                if self.models.current.generation != generation or self.cache.stopping:
                    return
                started = time.perf_counter()
                ensure_reasons(block, scores, models, missing[start : start + batch])
                self.cache.status.reasons_done += min(batch, len(missing) - start)
                if paced:
                    time.sleep(min(time.perf_counter() - started, 1.0))

    def reload_models(self) -> ModelSet:
        """Reload this worker's models now, and signal the other workers to do the same."""
        models = self.models.reload()
        if self.reload_signal is not None:
            self.reload_signal.send()
        return models

    def reasons_missing(self) -> int:
        """Cached rows whose reason codes for the current models are not computed yet."""
        generation = self.models.current.generation
        missing = 0
        for block in self.cache.blocks():
            scores = block.memo.get(generation)
            missing += len(block) if scores is None else scores.reasons.count(None)
        return missing

    def fill_reasons_in_background(self) -> None:
        if not self.settings.feature_warm_reasons:
            return

        def fill() -> None:
            self.fill_reasons(paced=True)
            if self.settle:
                settle_memory()

        thread = threading.Thread(target=fill, name="retain-reasons", daemon=True)
        self._reasons_thread = thread
        thread.start()


def build_service(store: Store, offers: list[Offer], settings: Settings) -> ScoringService:
    """The service with its model holder (registry by alias) and feature cache; call `start`."""
    from serving.models import registry_loader, registry_probe

    holder = ModelHolder(
        registry_loader(settings.mlflow_tracking_uri),
        alias=settings.model_alias,
        probe=registry_probe(settings.mlflow_tracking_uri),
    )
    cache = FeatureCache(store, max_age_seconds=settings.feature_max_age_seconds)
    service = ScoringService(
        store=store, models=holder, cache=cache, offers=offers, settings=settings
    )
    service.reload_signal = ReloadSignal(settings.data_dir / "serving" / "reload-request")
    return service


_settle_lock = threading.Lock()


# A thread back from I/O (the decision log's commit, a store read) waits for the GIL until the
# event loop hands it over, by default after 5 ms; each recommendation waits for its decision's
# commit, so that wait was its latency. 1 ms measured: recommend p99 at concurrency 8 from
# 19-24 ms to 17-19 ms, throughput up a quarter (docs/api.md, Performance).
GIL_SWITCH_INTERVAL_SECONDS: Final = 0.001


def settle_memory() -> None:
    """Collect, then freeze what survives out of the cyclic garbage collector's sight.

    The models, MLflow and the cached features are some 500k long-lived objects; a full
    collection walks all of them (~300 ms, every thread stalled), which is every tail latency
    of the service. Frozen objects are skipped. Called after loading models and after each
    warm-up round: unfreezing first lets the cycles of replaced blocks and models be collected.
    """
    with _settle_lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def start_service(
    service: ScoringService, on_swap: Callable[[ModelSet], None], *, served: bool = False
) -> None:
    """Load the models, then start the background warm-up and alias polling (if configured).

    `served`: this process is a worker of `retain serve`, not a program (a test) embedding the
    app. Only then does the service manage the garbage collector (`settle_memory`) and join the
    other workers' reloads through the reload signal file under `DATA_DIR`, and shorten the
    GIL's switch interval (`GIL_SWITCH_INTERVAL_SECONDS`).
    """
    holder, settings = service.models, service.settings
    settle = served
    if served:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    service.settle = settle
    if not served:
        service.reload_signal = None

    def swapped(models: ModelSet) -> None:
        on_swap(models)
        if settle:
            settle_memory()
        if service.cache.status.rounds_completed:
            service.fill_reasons_in_background()

    def warmed() -> None:
        service.fill_reasons()
        if settle:
            settle_memory()

    holder.prepare = service.prepare
    holder.on_swap = swapped
    holder.reload()
    service.cache.on_block = service.precompute
    service.cache.on_compact = service.carry
    if settings.feature_refresh_seconds > 0:
        # Keep the cache current as events arrive through any worker (SQLite; elsewhere a
        # changed customer is recomputed on its next request).
        service.cache.follow()
    service.cache.start_warming(
        settings.feature_refresh_seconds, after_block=service.precompute, after_round=warmed
    )
    holder.start_polling(settings.model_poll_seconds)
    if service.reload_signal is not None:
        service.reload_signal.watch(holder.reload)


def stop_service(service: ScoringService) -> None:
    if service.reload_signal is not None:
        service.reload_signal.stop()
    service.models.stop()
    service.cache.stop()
    service.decision_log.close()

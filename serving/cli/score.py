"""`retain score --as-of DATE`: batch-score every active customer with the champion models.

Writes `DATA_DIR/scores/<as_of>/scores.parquet`, `scores.csv` and `summary.json`, then moves the
`DATA_DIR/scores/latest` pointer to it; `GET /v1/at-risk` serves the run the pointer names.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer

from features.contract import ContractError
from features.definitions import CHURN_FEATURES
from features.settings import get_settings
from serving.cli.common import console, exit_on_bad_input


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def summarise(
    scores: pd.DataFrame, as_of: pd.Timestamp, versions: dict[str, Any]
) -> dict[str, Any]:
    """Counts by band, mean risk, top reasons and actions of one run (summary.json)."""
    reasons = pd.concat([scores[f"reason_{j}"] for j in (1, 2, 3)]).dropna()
    actions = scores["best_action"].dropna()
    return {
        "as_of": str(as_of.date()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "feature_set": CHURN_FEATURES.id,
        "models": versions,
        "customers": len(scores),
        "bands": {str(k): int(v) for k, v in scores["band"].value_counts().items()},
        "mean_risk": float(scores["risk"].mean()) if len(scores) else None,
        "expected_clv_total": float(scores["clv"].sum()) if scores["clv"].notna().any() else None,
        "top_reasons": {str(k): int(v) for k, v in reasons.value_counts().head(10).items()},
        "best_actions": {str(k): int(v) for k, v in actions.value_counts().items()},
        "best_actions_value_total": float(scores["best_action_value"].sum())
        if scores["best_action_value"].notna().any()
        else None,
    }


Reasons = Literal["all", "medium", "high", "none"]


def reasons_threshold(choice: Reasons, *, medium: float, high: float) -> float | None:
    """The lowest risk that gets reason codes for a `--reasons` choice (None: no reasons)."""
    return {"all": 0.0, "medium": medium, "high": high, "none": None}[choice]


def recent_offer_contacts(events: Path, since: pd.Timestamp, until: pd.Timestamp) -> pd.DataFrame:
    """Offers sent per customer (rows) and offer (columns) in [since, until), read by DuckDB
    straight from a Parquet events file (the contact caps of a run that does not load events)."""
    import duckdb

    with duckdb.connect() as con:
        counts = con.execute(
            "SELECT customer_id, offer_id, count(*) AS n FROM read_parquet(?) "
            "WHERE event_type = 'offer_sent' AND timestamp >= ? AND timestamp < ? "
            "GROUP BY ALL",
            [str(events), since.to_pydatetime(), until.to_pydatetime()],
        ).df()
    return counts.pivot_table(
        index="customer_id", columns="offer_id", values="n", aggfunc="sum", fill_value=0
    )


def write_csv(scores: pd.DataFrame, path: Path) -> None:
    """The scores as CSV through Arrow (several times faster than pandas at a million rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.Table.from_pandas(scores, preserve_index=False)
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def use_threads(obj: Any, threads: int, depth: int = 0) -> None:
    """Let the scikit-learn LightGBM models inside `obj` (the next-offer learners) predict on
    `threads` threads: the service loads them single-threaded, a batch wants every core."""
    import lightgbm as lgb

    if depth > 4:
        return
    if isinstance(obj, lgb.LGBMModel):
        obj.set_params(n_jobs=threads)
    elif isinstance(obj, dict):
        for child in obj.values():
            use_threads(child, threads, depth + 1)
    elif isinstance(obj, list | tuple):
        for child in obj:
            use_threads(child, threads, depth + 1)
    elif type(obj).__module__.startswith("training.") and hasattr(obj, "__dict__"):
        for child in vars(obj).values():
            use_threads(child, threads, depth + 1)


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, dict[str, float]] = {}
        self._at = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.timings[name] = {
            "wall_s": round(wall - self._at[0], 3),
            "cpu_s": round(cpu - self._at[1], 3),
        }
        self._at = (wall, cpu)

    def add(self, stages: dict[str, dict[str, float]]) -> None:
        self.timings |= stages
        self._at = (time.perf_counter(), time.process_time())


def score(
    as_of: Annotated[
        datetime,
        typer.Option(
            formats=["%Y-%m-%d"], help="Scoring date: features use events before its midnight."
        ),
    ],
    directory: Annotated[
        Path | None,
        typer.Option("--data", help="Read this data directory instead of the online store."),
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Registry alias (default: settings).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="LightGBM threads.")] = os.cpu_count() or 1,
    reasons: Annotated[
        Reasons,
        typer.Option(
            help="Which customers get reason codes: every one, the medium and high risk bands, "
            "the high band, or none (TreeSHAP is most of a large run's time)."
        ),
    ] = "medium",
    check: Annotated[
        bool,
        typer.Option(
            help="Check --data's events against the contract. --no-check reads a Parquet events "
            "file in place instead of loading it (for data `retain validate` already passed; "
            "what makes millions of customers fit in minutes)."
        ),
    ] = True,
) -> None:
    """Score every active customer (risk, band, reasons, CLV, best action) to DATA_DIR/scores."""
    from features.io import find_table, load_directory, read_offers, read_table
    from features.panel import build_panel, split_columns
    from serving.models import ModelHolder, registry_loader
    from serving.online import recent_contacts_frame
    from serving.scoring import CONTACT_WINDOW_DAYS, score_customers, scores_root
    from serving.store import Store

    settings = get_settings()
    started = time.perf_counter()
    clock = _Clock()
    cutoff = pd.Timestamp(as_of).normalize().as_unit("us")
    since = cutoff - pd.Timedelta(days=CONTACT_WINDOW_DAYS)
    holder = ModelHolder(
        registry_loader(settings.mlflow_tracking_uri), alias=alias or settings.model_alias
    )
    with console.status("loading models…"):
        models = holder.reload()
    if models.churn is None:
        console.print(f"[red]error[/]: {models.errors.get('churn-risk')}; train churn first")
        raise typer.Exit(1)
    for name, why in models.errors.items():
        console.print(f"[yellow]warning[/]: {name} not loaded ({why}); its columns stay empty")
    if models.next_offer is not None:
        use_threads(models.next_offer.model, threads)
    clock.lap("load_models")

    recent = None
    offers = []
    events: pd.DataFrame | Path
    with console.status("reading customers and events…"):
        if directory is not None:
            with exit_on_bad_input():
                in_place = not check and find_table(directory, "events").suffix == ".parquet"
                if in_place:
                    from features.contract import validate_customers

                    events = find_table(directory, "events")
                    raw = read_table(find_table(directory, "customers"))
                    checked = validate_customers(raw, source="customers")
                    if not checked.errors.empty:
                        raise ContractError(checked.errors)
                    customers = checked.valid
                    try:
                        offers = read_offers(find_table(directory, "offers"))
                    except ContractError:
                        offers = []
                    if offers:
                        recent = recent_offer_contacts(events, since, cutoff)
                else:
                    if not check:
                        console.print("[yellow]note[/]: CSV events are parsed and checked")
                    dataset = load_directory(directory)
                    customers, events, offers = dataset.customers, dataset.events, dataset.offers
        else:
            store = Store(settings.database_url)
            customers = store.customers_frame()
            events = store.events_frame()
            offers = read_offers(settings.offers_path) if settings.offers_path else []
            if offers:
                recent = recent_contacts_frame(store, [o.offer_id for o in offers], since, cutoff)
            store.close()
    if isinstance(events, pd.DataFrame):
        if events.empty:
            console.print("[red]error[/]: no events to score from")
            raise typer.Exit(1)
        if recent is None and offers:
            window = events[
                (events["event_type"] == "offer_sent")
                & (events["timestamp"] >= since)
                & (events["timestamp"] < cutoff)
            ]
            recent = window.groupby(["customer_id", "offer_id"]).size().unstack(fill_value=0)
    clock.lap("read")

    with console.status(f"features of the customers active at {cutoff.date()}…"):
        panel = build_panel(
            events,
            customers,
            [cutoff],
            horizon_days=settings.churn_horizon_days,
            allow_incomplete=True,
        )
        feature_names, _ = split_columns(panel)
        features = panel[["customer_id", "cutoff", *feature_names]]
        del panel
    if features.empty:
        console.print(f"[red]error[/]: no customer is active at {cutoff.date()}")
        raise typer.Exit(1)
    clock.lap("features")
    threshold = reasons_threshold(
        reasons, medium=settings.risk_band_medium, high=settings.risk_band_high
    )
    stages: dict[str, dict[str, float]] = {}
    with console.status(f"scoring {len(features):,} customers…"):
        scores = score_customers(
            features,
            customers,
            models,
            offers,
            as_of=cutoff,
            medium=settings.risk_band_medium,
            high=settings.risk_band_high,
            recent=recent,
            threads=threads,
            reasons_from=threshold,
            timings=stages,
        )
    clock.add(stages)

    root = scores_root(settings)
    run = root / str(cutoff.date())
    run.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(run / "scores.parquet", index=False)
    write_csv(scores, run / "scores.csv")
    clock.lap("write")
    summary = summarise(scores, cutoff, models.versions())
    summary["reasons_for"] = reasons
    summary["timings"] = clock.timings
    summary["seconds"] = round(time.perf_counter() - started, 2)
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_atomically(root / "latest", run.name + "\n")

    bands = summary["bands"]
    console.print(
        f"scored {len(scores):,} active customers at {cutoff.date()}: "
        f"high {bands.get('high', 0):,}, medium {bands.get('medium', 0):,}, "
        f"low {bands.get('low', 0):,} in {time.perf_counter() - started:.1f}s -> {run}"
    )


def register(app: typer.Typer) -> None:
    app.command()(score)

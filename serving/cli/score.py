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
from typing import Annotated, Any

import pandas as pd
import typer

from features.definitions import CHURN_FEATURES_V1
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
        "feature_set": CHURN_FEATURES_V1.id,
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
) -> None:
    """Score every active customer (risk, band, reasons, CLV, best action) to DATA_DIR/scores."""
    from features.io import load_directory
    from features.panel import build_panel, split_columns
    from serving.models import ModelHolder, registry_loader
    from serving.online import recent_contacts_frame
    from serving.scoring import CONTACT_WINDOW_DAYS, score_customers, scores_root
    from serving.store import Store

    settings = get_settings()
    started = time.perf_counter()
    cutoff = pd.Timestamp(as_of).normalize().as_unit("us")
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

    recent = None
    offers = []
    with console.status("reading customers and events…"):
        if directory is not None:
            with exit_on_bad_input():
                dataset = load_directory(directory)
            customers, events, offers = dataset.customers, dataset.events, dataset.offers
        else:
            from features.io import read_offers

            store = Store(settings.database_url)
            customers = store.customers_frame()
            events = store.events_frame()
            offers = read_offers(settings.offers_path) if settings.offers_path else []
            if offers:
                recent = recent_contacts_frame(
                    store,
                    [o.offer_id for o in offers],
                    cutoff - pd.Timedelta(days=CONTACT_WINDOW_DAYS),
                    cutoff,
                )
            store.close()
    if events.empty:
        console.print("[red]error[/]: no events to score from")
        raise typer.Exit(1)
    if recent is None and offers:
        window = events[
            (events["event_type"] == "offer_sent")
            & (events["timestamp"] >= cutoff - pd.Timedelta(days=CONTACT_WINDOW_DAYS))
            & (events["timestamp"] < cutoff)
        ]
        recent = window.groupby(["customer_id", "offer_id"]).size().unstack(fill_value=0)

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
    with console.status(f"scoring {len(features):,} customers (reasons take a while)…"):
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
        )

    root = scores_root(settings)
    run = root / str(cutoff.date())
    run.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(run / "scores.parquet", index=False)
    scores.to_csv(run / "scores.csv", index=False)
    summary = summarise(scores, cutoff, models.versions())
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

"""`retain campaign --budget B`: the best customers and offers for a budgeted campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from features.settings import get_settings
from serving.cli.common import console, exit_on_bad_input
from serving.cli.data import load_from_options


def campaign(
    budget: Annotated[float, typer.Option(min=0, help="Total expected spend allowed.")],
    directory: Annotated[
        Path | None, typer.Argument(help="Data directory (default DATA_DIR/demo).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Campaign date (default: day after the last event).")
    ] = None,
    limit: Annotated[
        list[str] | None, typer.Option(help="Per-offer cap, e.g. --limit gift=500.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="CSV of the allocation (default DATA_DIR/campaign.csv).")
    ] = None,
    show: Annotated[int, typer.Option(help="Rows to print.")] = 10,
) -> None:
    """Choose customers and offers maximising total expected net value under a budget."""
    from training.offer_pipeline import active_population
    from training.policy import expected_costs, plan_campaign
    from training.registry import load_champion

    settings = get_settings()
    with exit_on_bad_input():
        dataset = load_from_options(directory or settings.data_dir / "demo", None, None, None, None)
    try:
        policy = load_champion("next-offer").model
        clv_model = load_champion("clv").model
    except LookupError as exc:
        console.print(f"[red]error[/]: {exc}; train the models first (`retain demo`)")
        raise typer.Exit(1) from None
    offer_limits = {}
    for item in limit or []:
        name, _, count = item.partition("=")
        if not count.isdigit():
            raise typer.BadParameter(f"{item!r}: expected OFFER=COUNT", param_hint="--limit")
        offer_limits[name] = int(count)
    when = (
        pd.Timestamp(as_of)
        if as_of
        else dataset.events["timestamp"].max().normalize() + pd.Timedelta(days=1)
    )

    x, rules = active_population(
        dataset.customers,
        dataset.events,
        dataset.offers,
        when,
        horizon_days=settings.churn_horizon_days,
    )
    clv = pd.Series(clv_model.predict(x), index=x.index).clip(lower=0)
    values = policy.values(x, clv, dataset.offers)
    costs = expected_costs(policy.redeem_probabilities(x), dataset.offers)
    plan = plan_campaign(
        values, costs, rules[values.columns], budget=budget, offer_limits=offer_limits
    )

    target = out or settings.data_dir / "campaign.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    plan.allocation.to_csv(target, index=False)
    console.print(
        f"campaign of {when.date()} over {len(x):,} active customers, budget {budget:,.0f}"
    )
    console.print(plan.allocation.head(show).round(2).to_string(index=False))
    mix = plan.allocation["offer_id"].value_counts().to_dict()
    console.print(
        f"{len(plan.allocation):,} contacts {mix}; expected value {plan.total_value:,.0f} for "
        f"{plan.total_cost:,.0f} spent; LP bound {plan.upper_bound:,.0f} "
        f"(greedy within {plan.bound_gap:.1%}) -> {target}"
    )


def register(app: typer.Typer) -> None:
    app.command()(campaign)

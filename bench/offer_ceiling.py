"""How much of the oracle's value any feature-based offer policy can reach on a demo world.

The learned policy estimates each action's net value from noisy logged outcomes. This script
removes that noise: it regresses the *true* parts of every action's net value (Δretention per
offer, CLV and expected cost, from `ground_truth.parquet`) on the features at the data end,
cross-fitted over customers (each customer's choice comes from models that did not see that
customer), combines them as the policy does (Δretention × CLV − expected cost) and picks the
best eligible action. (Regressing the net value itself reaches a few points less: the product
is harder for trees than its parts.) What it reaches is an estimate of the ceiling the features
allow, with the policy's own population, rules and value definition (`oracle_comparison`).

    python -m bench.offer_ceiling DATA_DIR/demo [--folds 5] [--with-history] [--out FILE.json]

`--with-history` adds 45 columns a trained model does not have: two-week counts of visits,
purchases and email opens over the last 26 weeks, lifetime rates per week of tenure, and the
last 8 weeks' rate over the lifetime rate. They are what a filter of the latent engagement would
read; if the ceiling does not move with them, the missing value is not in the history.

The world is written by `retain demo-data` or `retain demo` (DATA_DIR/demo).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.contract import NO_OFFER
from features.io import load_directory
from training.encoding import categorical_columns
from training.next_offer import oracle_comparison
from training.offer_pipeline import active_population
from training.policy import best_actions

HORIZON_DAYS = 90
HISTORY_WEEKS = 26  # --with-history: two-week bins over the last half year
HISTORY_TYPES = ("visit", "purchase", "email_open")


def truth_table(truth: pd.DataFrame, column: str, customers: pd.Index) -> pd.DataFrame:
    """Customers × offers: one column of the ground truth."""
    return truth.pivot(index="customer_id", columns="offer_id", values=column).loc[customers]


def history_features(
    events: pd.DataFrame, customers: pd.DataFrame, ids: pd.Index, end: pd.Timestamp
) -> pd.DataFrame:
    """Activity over time per customer (`--with-history`): two-week counts, lifetime rates and
    the recent rate against the lifetime one, from events before `end`."""
    past = events[events["customer_id"].isin(ids) & (events["timestamp"] < end)]
    weeks_ago = ((end - past["timestamp"]).dt.total_seconds() // (7 * 86_400)).astype(int)
    signup = customers.set_index("customer_id")["signup_date"].reindex(ids)
    tenure_weeks = ((end - signup).dt.days / 7).clip(lower=1)
    columns: dict[str, pd.Series] = {}
    for kind in HISTORY_TYPES:
        of_kind = past["event_type"] == kind
        recent = of_kind & (weeks_ago < HISTORY_WEEKS)
        counts = pd.crosstab(past.loc[recent, "customer_id"], weeks_ago[recent] // 2)
        counts = counts.reindex(index=ids, columns=range(HISTORY_WEEKS // 2), fill_value=0)
        for fortnight in counts.columns:
            columns[f"{kind}_fortnight_{fortnight}"] = counts[fortnight]
        lifetime = past[of_kind].groupby("customer_id").size().reindex(ids, fill_value=0)
        columns[f"{kind}_per_week"] = lifetime / tenure_weeks
        last_8 = past[of_kind & (weeks_ago < 8)].groupby("customer_id").size()
        last_8 = last_8.reindex(ids, fill_value=0) / 8
        columns[f"{kind}_pace_8w"] = np.log((last_8 + 0.05) / (columns[f"{kind}_per_week"] + 0.05))
    return pd.DataFrame(columns, index=ids)


def cross_fitted_values(
    x: pd.DataFrame, values: pd.DataFrame, *, folds: int, seed: int
) -> pd.DataFrame:
    """Out-of-fold LightGBM predictions of each column of `values` from the features."""
    fold = np.random.default_rng(seed).integers(0, folds, len(x))
    predicted = pd.DataFrame(0.0, index=values.index, columns=values.columns)
    # categories as LightGBM's own categorical columns, numbers as they are
    matrix = x.astype(dict.fromkeys(categorical_columns(x, list(x.columns)), "category"))
    for offer in values.columns:
        target = values[offer].to_numpy()
        for k in range(folds):
            model = lgb.LGBMRegressor(
                n_estimators=400,
                learning_rate=0.05,
                num_leaves=31,
                min_child_samples=50,
                subsample=0.8,
                subsample_freq=1,
                random_state=seed,
                verbose=-1,
                # the same figure on every run (on the same thread count)
                deterministic=True,
                force_row_wise=True,
            ).fit(matrix[fold != k], target[fold != k])
            predicted.loc[fold == k, offer] = model.predict(matrix[fold == k])
    return predicted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, help="directory of a demo world (with ground truth)")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting folds over customers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and the models")
    parser.add_argument(
        "--with-history", action="store_true", help="add 45 activity-over-time columns"
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    truth_path = args.world / "ground_truth.parquet"
    if not truth_path.is_file():
        parser.error(f"{truth_path}: not found (a demo world from `retain demo-data` has it)")
    started = time.perf_counter()
    dataset = load_directory(args.world)
    truth = pd.read_parquet(truth_path)
    end = dataset.events["timestamp"].max()
    x, rules = active_population(
        dataset.customers,
        dataset.events,
        dataset.offers,
        end,
        horizon_days=HORIZON_DAYS,
        ids=pd.Series(truth["customer_id"].unique()),
    )
    if args.with_history:
        extra = history_features(dataset.events, dataset.customers, x.index, end)
        x = pd.concat([x, extra], axis=1)

    def learnt(column: str, *, per_offer: bool = True) -> pd.DataFrame:
        table = truth_table(truth, column, x.index)
        table = table if per_offer else table.iloc[:, :1]
        return cross_fitted_values(x, table, folds=args.folds, seed=args.seed)

    clv = learnt("clv_365", per_offer=False).iloc[:, 0]  # the same for every offer: one model
    predicted = learnt("delta_retention").mul(clv.clip(lower=0), axis=0) - learnt("expected_cost")
    predicted.insert(0, NO_OFFER, 0.0)
    chosen = best_actions(predicted, rules[predicted.columns])
    result = oracle_comparison(chosen, truth, rules)
    result |= {
        "world": str(args.world),
        "customers_in_world": int(len(dataset.customers)),
        "folds": args.folds,
        "features": int(x.shape[1]),
        "with_history": args.with_history,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"{int(result['customers']):,} active customers: a noise-free regression on the features "
        f"reaches {result['share_of_oracle']:.1%} of the oracle "
        f"({result['gain_over_best_single']:+.1%} against the best single offer, "
        f"{result['best_single_offer']})"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The next-offer training job: logged decisions -> uplift -> policy -> evaluation -> MLflow.

1. `logged_decisions` and `decision_outcomes` turn the `offer_sent` history into (decision,
   outcome) rows; features come from the feature engine as of each decision's time.
2. Decisions are split by time, with an embargo so that no training outcome window reaches into
   the test period. Five meta-learners (DR, T, S, logit and boosted shift) are fitted on the
   earlier part.
3. On the later part: Qini / AUUC per offer and off-policy value (IPS and doubly robust) of the
   learned policy against the logging policy, random, the best single offer and no offers. The
   boosted-shift learner is kept unless another beats it by a paired difference of held-out IPS
   value whose 95% interval excludes zero; the chosen one is refitted on all decisions and
   registered as `next-offer`.
4. With the demo world's ground truth, every learner and the refitted model are also scored
   against the oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.definitions import CHURN_FEATURES_V2
from features.engine import build_features
from features.offers import Offer
from training.next_offer import (
    Goal,
    NextOfferModel,
    PolicyReport,
    active_at_cutoff,
    decision_outcomes,
    evaluate_policy,
    logged_decisions,
    oracle_comparison,
)
from training.offpolicy import PairedDifference, paired_difference
from training.pipeline import data_fingerprint
from training.policy import best_actions, eligibility
from training.registry import RegisteredRun, log_training_run, serving_input_example

MODEL_NAME = "next-offer"
LEARNERS = ("dr", "t", "s", "logit", "boost")
# Kept unless another learner is clearly better on held-out decisions: it was the best of the
# five against the demo world's truth on every world measured, while held-out IPS values, each
# +-20 wide at 15k decisions, once picked the worst (docs/next-offer.md).
DEFAULT_LEARNER = "boost"
Progress = Callable[[str], None]


@dataclass
class OfferTrainingResult:
    model: NextOfferModel
    learner: str
    reports: dict[str, PolicyReport]  # learner -> held-out evaluation
    oracle: dict[str, float | str] | None
    metrics: dict[str, float]
    report_path: Path
    run: RegisteredRun | None
    # learner (fitted on the training period only) -> `oracle_comparison`, on the demo world
    oracle_by_learner: dict[str, dict[str, float | str]] = field(default_factory=dict)


def profiles(customers: pd.DataFrame, ids: pd.Series, at: pd.Series) -> pd.DataFrame:
    """Rule inputs (segment, country, language, consent, loyalty, tenure) per row."""
    rows = customers.set_index("customer_id").reindex(ids.to_numpy())
    out = rows[["segment", "country", "language", "loyalty_member", "marketing_consent"]].copy()
    out["tenure_days"] = (at.to_numpy() - rows["signup_date"].to_numpy()) / np.timedelta64(1, "D")
    out.index = ids.index
    return out


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _feature_frame(features: pd.DataFrame) -> pd.DataFrame:
    return features.drop(columns=["customer_id", "cutoff"])


def _time_split(decided_at: pd.Series, window_days: int, test_share: float) -> np.ndarray:
    """True for training rows: decided before the test period minus the outcome window."""
    test_start = decided_at.quantile(1 - test_share)
    return np.asarray(decided_at + pd.Timedelta(days=window_days) <= test_start)


def choose_learner(
    reports: dict[str, PolicyReport], default: str = DEFAULT_LEARNER
) -> tuple[str, dict[str, PairedDifference]]:
    """The default learner, unless another beats it on the same held-out decisions by a paired
    IPS difference whose 95% interval lies above zero (then the one with the largest such gain).

    Returns the chosen learner and each other learner's difference against the default.
    """
    baseline = reports[default].learned_ips_terms
    versus = {
        name: paired_difference(report.learned_ips_terms, baseline)
        for name, report in reports.items()
        if name != default
    }
    better = {name: d for name, d in versus.items() if d.low > 0}
    chosen = max(better, key=lambda name: better[name].mean) if better else default
    return chosen, versus


def _plot_qini(report: PolicyReport) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for offer, curve in report.qini.items():
        ax.plot(curve["fraction"], curve["qini"], label=f"{offer} (AUUC {report.auuc[offer]:.3f})")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(
        xlabel="share of customers targeted (by predicted uplift)",
        ylabel="incremental outcomes per treated",
        title="Qini curves, held-out decisions",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _plot_policy_values(report: PolicyReport) -> Figure:
    names = list(report.values)
    dr = np.array([report.values[n].dr for n in names])
    low = np.array([report.values[n].dr_low for n in names])
    high = np.array([report.values[n].dr_high for n in names])
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.barh(names, dr, xerr=[dr - low, high - dr], color="tab:blue", alpha=0.7)
    ax.set(
        xlabel="net value per decision (doubly robust, 95% CI)",
        title="Off-policy value on held-out decisions",
    )
    fig.tight_layout()
    return fig


def train_next_offer(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    offers: list[Offer],
    clv: Callable[[pd.DataFrame], np.ndarray],
    *,
    goal: Goal | None = None,
    horizon_days: int = 90,
    truth: pd.DataFrame | None = None,
    data_end: pd.Timestamp | None = None,
    test_share: float = 0.25,
    seed: int = 0,
    num_threads: int = 2,
    out_dir: Path,
    register: bool = True,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
) -> OfferTrainingResult:
    """Train, evaluate, report and register the next-offer policy.

    Args:
        customers, events: contract frames (validated).
        offers: the catalog.
        clv: predicts 12-month revenue from a feature frame (the champion CLV model).
        goal: what an offer is judged by (default: retention over the churn horizon).
        horizon_days: H of the "active" rule: only customers active at a decision are learnt
            from and scored.
        truth: the demo world's ground truth, to score the policy against the oracle.
        data_end: end of the data (default: last event).
        test_share: share of decisions (the latest) held out for evaluation.
        seed, num_threads: LightGBM determinism and threads.
        out_dir: where plots and the report go (also logged to MLflow).
        register: log to MLflow and register `next-offer` (alias challenger, first: champion).
        tracking_uri: MLflow URI (settings when None).
        progress: called with a short message before each step.
    """
    goal = goal or Goal()
    end = data_end if data_end is not None else events["timestamp"].max()
    _say(progress, "collecting logged decisions and their outcomes")
    decisions = logged_decisions(events)
    outcomes = decision_outcomes(events, decisions, goal=goal, data_end=end)
    complete = outcomes["complete"].to_numpy()
    decisions = decisions[complete].reset_index(drop=True)
    outcomes = outcomes[complete].reset_index(drop=True)
    if decisions.empty:
        raise ValueError("no logged offer decisions with a complete outcome window")

    _say(progress, f"features at {len(decisions):,} decision times")
    entities = decisions[["customer_id", "decided_at"]].rename(columns={"decided_at": "cutoff"})
    x = _feature_frame(build_features(events, customers, entities))
    active = active_at_cutoff(x, horizon_days).to_numpy()
    decisions, outcomes = (
        decisions[active].reset_index(drop=True),
        outcomes[active].reset_index(drop=True),
    )
    x = x[active].reset_index(drop=True)
    value_of_customer = pd.Series(clv(x), index=x.index).clip(lower=0)
    rules = eligibility(
        profiles(customers, decisions["customer_id"], decisions["decided_at"]), offers
    )

    train = _time_split(decisions["decided_at"], goal.window_days, test_share)
    test = (decisions["decided_at"] >= decisions["decided_at"].quantile(1 - test_share)).to_numpy()
    models: dict[str, NextOfferModel] = {}
    reports: dict[str, PolicyReport] = {}
    for learner in LEARNERS:
        _say(progress, f"fitting the {learner.upper()}-learner on {train.sum():,} decisions")
        model = NextOfferModel(learner=learner, seed=seed, num_threads=num_threads)
        models[learner] = model.fit(x[train], decisions[train], outcomes[train])
        _say(progress, f"evaluating it on {test.sum():,} held-out decisions")
        reports[learner] = evaluate_policy(
            model,
            x[test],
            decisions[test],
            outcomes[test],
            value_of_customer[test],
            offers,
            rules[test],
        )
    # Compared by IPS, not DR: the direct-method part of DR uses each learner's own reward model,
    # so a learner that overstates its effects also overstates its DR value. With exact logged
    # propensities IPS is unbiased and judges every learner by the same yardstick; paired, as
    # the learners' values differ far less than each one's interval is wide.
    chosen, versus_default = choose_learner(reports)
    report = reports[chosen]
    # The held-out period has served its purpose (choosing the learner, measuring it); the model
    # that goes out is refitted on every decision, the latest included: half as much data again,
    # and the most recent behaviour.
    _say(progress, f"refitting the {chosen.upper()}-learner on all {len(decisions):,} decisions")
    model = NextOfferModel(learner=chosen, seed=seed, num_threads=num_threads)
    model.fit(x, decisions, outcomes)

    metrics: dict[str, float] = {}
    for learner, rep in reports.items():
        metrics |= {f"{learner}.{k}": v for k, v in rep.metrics().items()}
    for learner, diff in versus_default.items():
        metrics |= {
            f"{learner}.ips_minus_{DEFAULT_LEARNER}{suffix}": value
            for suffix, value in (("", diff.mean), ("_low", diff.low), ("_high", diff.high))
        }
    metrics |= {f"policy.{k}": v for k, v in report.metrics().items()}

    oracle = None
    oracle_by_learner: dict[str, dict[str, float | str]] = {}
    if truth is not None:
        _say(progress, "scoring the policies against the ground truth")
        population = active_population(
            customers,
            events,
            offers,
            end,
            horizon_days=horizon_days,
            ids=pd.Series(truth["customer_id"].unique()),
        )
        # Every learner as fitted on the training period, then the refitted one that goes out.
        for learner, fitted in models.items():
            versus = score_against_truth(fitted, *population, clv, truth, offers)
            oracle_by_learner[learner] = versus
            metrics |= {
                f"{learner}.oracle.{k}": float(v)
                for k, v in versus.items()
                if not isinstance(v, str)
            }
        oracle = score_against_truth(model, *population, clv, truth, offers)
        metrics |= {f"oracle.{k}": float(v) for k, v in oracle.items() if not isinstance(v, str)}

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"qini.png": _plot_qini(report), "policy_value.png": _plot_policy_values(report)}
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110)
    report_path = out_dir / "report.md"
    report_path.write_text(
        render_report(reports, chosen, oracle, goal, oracle_by_learner, versus_default)
    )

    run = None
    if register:
        _say(progress, "logging to MLflow")
        run = log_training_run(
            kind="next-offer",
            estimator=model,
            input_example=serving_input_example(x[test], list(model.categories_)),
            params={
                "learner": chosen,
                "goal": goal.name,
                "test_share": test_share,
                "seed": seed,
                "offers": ",".join(model.offers_),
                "decisions_train": int(train.sum()),
                "decisions_test": int(test.sum()),
            },
            tags={
                "feature_set": CHURN_FEATURES_V2.id,
                "data_fingerprint": data_fingerprint(x),
                "test_cutoff": str(decisions["decided_at"][test].min().date()),
                "target": goal.name,
            },
            metrics=metrics,
            artifact_dir=out_dir,
            model_name=MODEL_NAME,
            experiment_name=MODEL_NAME,
            tracking_uri=tracking_uri,
        )
    return OfferTrainingResult(
        model, chosen, reports, oracle, metrics, report_path, run, oracle_by_learner
    )


def active_population(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    offers: list[Offer],
    as_of: pd.Timestamp,
    *,
    horizon_days: int,
    ids: pd.Series | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and eligible actions at `as_of` of the customers active then (all, or `ids`),
    both indexed by customer id: the population a campaign or an evaluation scores."""
    ids = customers["customer_id"] if ids is None else ids
    entities = pd.DataFrame({"customer_id": ids.to_numpy(), "cutoff": as_of})
    x = _feature_frame(build_features(events, customers, entities))
    active = active_at_cutoff(x, horizon_days).to_numpy()
    ids = pd.Series(ids.to_numpy()[active])
    x = x[active].set_axis(ids.to_numpy())
    rules = eligibility(profiles(customers, ids, pd.Series(as_of, index=ids.index)), offers)
    return x, rules.set_axis(ids.to_numpy())


def evaluate_against_truth(
    model: NextOfferModel,
    customers: pd.DataFrame,
    events: pd.DataFrame,
    offers: list[Offer],
    clv: Callable[[pd.DataFrame], np.ndarray],
    truth: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    horizon_days: int,
) -> dict[str, float | str]:
    """Share of the oracle's true net value that the learned policy captures at `as_of`,
    over the customers active then (the ones Retain scores)."""
    x, rules = active_population(
        customers,
        events,
        offers,
        as_of,
        horizon_days=horizon_days,
        ids=pd.Series(truth["customer_id"].unique()),
    )
    return score_against_truth(model, x, rules, clv, truth, offers)


def score_against_truth(
    model: NextOfferModel,
    x: pd.DataFrame,
    rules: pd.DataFrame,
    clv: Callable[[pd.DataFrame], np.ndarray],
    truth: pd.DataFrame,
    offers: list[Offer],
) -> dict[str, float | str]:
    """`oracle_comparison` of the model's choices for a population from `active_population`."""
    values = model.values(x, pd.Series(clv(x), index=x.index).clip(lower=0), offers)
    chosen = best_actions(values, rules[values.columns])
    return oracle_comparison(chosen, truth, rules)


def render_report(
    reports: dict[str, PolicyReport],
    chosen: str,
    oracle: dict[str, Any] | None,
    goal: Goal,
    oracle_by_learner: dict[str, dict[str, Any]] | None = None,
    versus_default: dict[str, PairedDifference] | None = None,
) -> str:
    """A one-page Markdown report of the held-out evaluation."""
    lines = [
        "# Next-offer policy",
        "",
        f"Goal: `{goal.name}`. Learner chosen: **{chosen.upper()}** (the {DEFAULT_LEARNER}"
        " learner unless another beats it by a paired IPS difference with a 95% CI above 0).",
        "",
    ]
    if versus_default:
        lines += [
            f"| learner | IPS minus {DEFAULT_LEARNER}, per decision | 95% CI |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {d.mean:+.2f} | [{d.low:+.2f}, {d.high:+.2f}] |"
            for name, d in versus_default.items()
        ]
        lines.append("")
    lines += [
        "## Off-policy value per decision (held-out, 95% CI)",
        "",
        "| learner | policy | IPS | DR | DR 95% CI |",
        "|---|---|---|---|---|",
    ]
    for learner, report in reports.items():
        for name, value in report.values.items():
            lines.append(
                f"| {learner} | {name} | {value.ips:.2f} | {value.dr:.2f} | "
                f"[{value.dr_low:.2f}, {value.dr_high:.2f}] |"
            )
    lines += [
        "",
        "## Area under the Qini curve per offer",
        "",
        "| learner | offer | AUUC |",
        "|---|---|---|",
    ]
    for learner, report in reports.items():
        lines += [f"| {learner} | {offer} | {area:.4f} |" for offer, area in report.auuc.items()]
    if oracle is not None:
        lines += [
            "",
            "## Against the ground truth (demo world)",
            "",
            "| measure | value |",
            "|---|---|",
        ]
        for key, value in oracle.items():
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {key} | {text} |")
        if oracle_by_learner:
            lines += [
                "",
                "Each learner as fitted on the training period only (the refitted model above"
                " also saw the held-out decisions):",
                "",
                "| learner | share of oracle | gain over best single offer | policy value |",
                "|---|---|---|---|",
            ]
            for learner, versus in oracle_by_learner.items():
                lines.append(
                    f"| {learner} | {versus['share_of_oracle']:.3f} | "
                    f"{versus['gain_over_best_single']:+.3f} | {versus['policy_value']:.0f} |"
                )
    lines += ["", "![Qini](qini.png)", "", "![Policy value](policy_value.png)", ""]
    return "\n".join(lines)

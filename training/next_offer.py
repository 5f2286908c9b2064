"""The next-offer model: uplift of each offer, redemption, and the policy built on them.

Learnt from the logged `offer_sent` history (the control decisions `offer_id = none` included),
each decision carrying the propensity with which the logging policy chose it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from features.contract import NO_OFFER
from features.offers import Offer
from training.encoding import categorical_columns, encode_frame, learn_categories
from training.offpolicy import (
    PolicyValue,
    auuc,
    deterministic,
    ips_terms,
    policy_value,
    qini_curve,
    uniform,
)
from training.policy import best_actions, expected_costs, net_values
from training.uplift import BoostedShiftLearner, DRLearner, LogitLearner, SLearner, TLearner

REDEEM_WINDOW_DAYS = 30


@dataclass(frozen=True)
class Goal:
    """What an offer is judged by: retention over the horizon, or an event within a window."""

    event_type: str | None = None  # None: retention (no churn in the horizon)
    window_days: int = 90

    @property
    def name(self) -> str:
        if self.event_type is None:
            return f"retained_{self.window_days}d"
        return f"{self.event_type}_within_{self.window_days}d"


def logged_decisions(events: pd.DataFrame) -> pd.DataFrame:
    """The randomised decisions of the logging policy: `offer_sent` rows with a propensity."""
    sent = events[(events["event_type"] == "offer_sent") & events["propensity"].notna()]
    return (
        sent[["event_id", "customer_id", "timestamp", "offer_id", "propensity"]]
        .rename(columns={"event_id": "decision_id", "timestamp": "decided_at"})
        .reset_index(drop=True)
    )


_OUTCOMES_SQL = """
SELECT d.decision_id,
       coalesce(bool_or({goal}), false) AS reached,
       coalesce(bool_or(e.event_type = 'cancellation' AND e.timestamp <= d.decided_at + {window}),
                false) AS cancelled,
       coalesce(bool_or(e.event_type = 'offer_redeemed' AND e.offer_id = d.offer_id
                        AND e.timestamp <= d.decided_at + {redeem}), false) AS redeemed
FROM decisions d
LEFT JOIN events e
  ON e.customer_id = d.customer_id
 AND e.timestamp > d.decided_at
 AND e.timestamp <= d.decided_at + greatest({window}, {redeem})
GROUP BY d.decision_id
"""


def decision_outcomes(
    events: pd.DataFrame, decisions: pd.DataFrame, *, goal: Goal, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Outcome of each decision: goal reached in (t, t + window], redeemed within 30 days.

    Retention follows the contract's churn label: a purchase in (t, t + H] and no cancellation
    there. Decisions whose window reaches past `data_end` get `complete = False`. One range join
    in DuckDB: a million decisions against ten million events take seconds.
    """
    window = f"INTERVAL {int(goal.window_days)} DAY"
    reached = (
        f"e.event_type = 'purchase' AND e.timestamp <= d.decided_at + {window}"
        if goal.event_type is None
        else f"e.event_type = $goal AND e.timestamp <= d.decided_at + {window}"
    )
    sql = _OUTCOMES_SQL.format(
        goal=reached, window=window, redeem=f"INTERVAL {REDEEM_WINDOW_DAYS} DAY"
    )
    con = duckdb.connect()
    try:
        con.register(
            "decisions", decisions[["decision_id", "customer_id", "decided_at", "offer_id"]]
        )
        con.register("events", events[["customer_id", "timestamp", "event_type", "offer_id"]])
        params = {} if goal.event_type is None else {"goal": goal.event_type}
        flags = con.execute(sql, params).df().set_index("decision_id")
    finally:
        con.close()
    flags = flags.reindex(decisions["decision_id"])
    reached_goal = (
        flags["reached"] & ~flags["cancelled"] if goal.event_type is None else flags["reached"]
    )
    longest = pd.Timedelta(days=max(goal.window_days, REDEEM_WINDOW_DAYS))
    return pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy(),
            "outcome": reached_goal.to_numpy(dtype=float),
            "redeemed": flags["redeemed"].to_numpy(dtype=bool),
            "complete": (decisions["decided_at"] + longest <= data_end).to_numpy(),
        }
    )


def active_at_cutoff(features: pd.DataFrame, horizon_days: int) -> pd.Series:
    """The panel's "active at T" rule (`features.panel.active_filter`) on a feature frame:
    a purchase in the last H days and no cancellation since. Decisions about customers who had
    already gone teach nothing about what an offer does, and scoring them wastes contacts."""
    since_purchase = features["days_since_last_purchase"]
    since_cancel = features["days_since_last_cancellation"]
    return (since_purchase <= horizon_days) & ~(since_cancel <= since_purchase)


def _classifier(seed: int, threads: int) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(
        n_estimators=150,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=50,
        verbose=-1,
        deterministic=True,
        force_row_wise=True,
        random_state=seed,
        n_jobs=threads or None,
    )


class NextOfferModel(BaseEstimator):  # type: ignore[misc]
    """Uplift on the goal, redemption probability per offer, and the net-value policy."""

    def __init__(self, *, learner: str = "dr", seed: int = 0, num_threads: int = 0) -> None:
        self.learner = learner
        self.seed = seed
        self.num_threads = num_threads

    def fit(
        self, features: pd.DataFrame, decisions: pd.DataFrame, outcomes: pd.DataFrame
    ) -> NextOfferModel:
        """Fit on decision-time features, the logged decisions and their outcomes (row-aligned)."""
        self.feature_names_ = list(features.columns)
        self.n_decisions_ = len(features)
        self.categories_ = learn_categories(
            features, categorical_columns(features, self.feature_names_)
        )
        features = self._matrix(features)
        action = decisions["offer_id"].to_numpy(dtype=object)
        propensity = decisions["propensity"].to_numpy(dtype=float)
        outcome = outcomes["outcome"].to_numpy(dtype=float)
        if self.learner == "logit":
            self.uplift_ = LogitLearner(
                seed=self.seed,
                num_threads=self.num_threads,
                categorical=tuple(self.categories_),
            )
        else:
            learner_class = {
                "dr": DRLearner,
                "t": TLearner,
                "s": SLearner,
                "boost": BoostedShiftLearner,
            }[self.learner]
            self.uplift_ = learner_class(seed=self.seed, num_threads=self.num_threads)
        self.uplift_.fit(features, action, propensity, outcome)
        self.offers_ = list(self.uplift_.offers_)
        control = action == NO_OFFER
        self.baseline_ = _classifier(self.seed, self.num_threads).fit(
            features[control], outcome[control]
        )
        self.redeem_: dict[str, Any] = {}
        for offer in self.offers_:
            rows = action == offer
            redeemed = outcomes["redeemed"].to_numpy()[rows]
            # A constant rate where redemptions are too few (or all) to learn from.
            if redeemed.sum() < 20 or (~redeemed).sum() < 20:
                self.redeem_[offer] = float(redeemed.mean()) if rows.any() else 0.0
            else:
                self.redeem_[offer] = _classifier(self.seed, self.num_threads).fit(
                    features[rows], redeemed
                )
        return self

    def _matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        """Features as LightGBM sees them: floats, categories as codes learnt at fit time."""
        encoded = encode_frame(features, self.feature_names_, self.categories_)
        return pd.DataFrame(encoded, columns=self.feature_names_, index=features.index)

    def effects(self, features: pd.DataFrame) -> pd.DataFrame:
        """Change in the goal probability of each offer against `none`."""
        check_is_fitted(self, "uplift_")
        return self.uplift_.predict_effects(self._matrix(features))

    def baseline(self, features: pd.DataFrame) -> pd.Series:
        """Goal probability without any offer."""
        check_is_fitted(self, "baseline_")
        probabilities = np.asarray(self.baseline_.predict_proba(self._matrix(features)))
        return pd.Series(probabilities[:, 1], index=features.index)

    def redeem_probabilities(self, features: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "redeem_")
        x = self._matrix(features)
        return pd.DataFrame(
            {
                offer: model.predict_proba(x)[:, 1]
                if not isinstance(model, float)
                else np.full(len(x), model)
                for offer, model in self.redeem_.items()
            },
            index=features.index,
        )

    def values(self, features: pd.DataFrame, clv: pd.Series, offers: list[Offer]) -> pd.DataFrame:
        """Expected net value of each action (`none` = 0) for each row."""
        costs = expected_costs(self.redeem_probabilities(features), offers)
        return net_values(self.effects(features), clv, costs)

    def reward_model(
        self, features: pd.DataFrame, clv: pd.Series, offers: list[Offer]
    ) -> pd.DataFrame:
        """Predicted reward of each action: goal probability x CLV − expected cost."""
        base = self.baseline(features) * clv
        values = self.values(features, clv, offers)
        return values.add(base, axis=0)


def realised_reward(
    decisions: pd.DataFrame, outcomes: pd.DataFrame, clv: pd.Series, offers: list[Offer]
) -> np.ndarray:
    """Reward of each logged decision: goal reached x CLV − cost if redeemed − contact cost."""
    catalog = {o.offer_id: o for o in offers}
    cost = decisions["offer_id"].map(lambda a: catalog[a].cost if a in catalog else 0.0)
    contact = decisions["offer_id"].map(lambda a: catalog[a].contact_cost if a in catalog else 0.0)
    return (
        outcomes["outcome"].to_numpy() * clv.to_numpy()
        - outcomes["redeemed"].to_numpy() * cost.to_numpy(dtype=float)
        - contact.to_numpy(dtype=float)
    )


@dataclass(frozen=True)
class PolicyReport:
    """Held-out evaluation of the learned policy and its rivals."""

    values: dict[str, PolicyValue]  # policy name -> off-policy value per decision
    auuc: dict[str, float]  # offer -> area under the Qini curve
    qini: dict[str, pd.DataFrame]  # offer -> Qini curve
    best_single_offer: str
    # the learned policy's IPS term of each held-out decision, to compare learners pairwise
    learned_ips_terms: np.ndarray = field(default_factory=lambda: np.empty(0))

    def metrics(self) -> dict[str, float]:
        out = {f"auuc_{offer}": value for offer, value in self.auuc.items()}
        for name, value in self.values.items():
            out |= value.as_dict(prefix=f"{name}_")
        return out


def evaluate_policy(
    model: NextOfferModel,
    features: pd.DataFrame,
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    clv: pd.Series,
    offers: list[Offer],
    eligible: pd.DataFrame,
) -> PolicyReport:
    """Qini per offer and IPS / doubly-robust value of the learned policy and its rivals."""
    actions = [NO_OFFER, *model.offers_]
    eligible = eligible[actions]
    values = model.values(features, clv, offers)[actions]
    reward = realised_reward(decisions, outcomes, clv, offers)
    reward_model = model.reward_model(features, clv, offers)[actions]
    logged_action = decisions["offer_id"].to_numpy(dtype=object)
    logged_propensity = decisions["propensity"].to_numpy(dtype=float)
    known = np.isin(logged_action, actions)

    totals = values.where(eligible, 0.0).sum()
    best_single = str(totals.drop(NO_OFFER).idxmax())
    single = pd.Series(np.where(eligible[best_single], best_single, NO_OFFER), index=values.index)
    policies = {
        "learned": deterministic(best_actions(values, eligible), actions),
        "random": uniform(eligible),
        "best_single": deterministic(single, actions),
        "no_offers": deterministic(pd.Series(NO_OFFER, index=values.index), actions),
    }
    estimates = {
        name: policy_value(
            reward=reward[known],
            logged_action=logged_action[known],
            logged_propensity=logged_propensity[known],
            target=target[known],
            reward_model=reward_model[known],
        )
        for name, target in policies.items()
    }
    mean_reward = float(reward[known].mean())
    half = 1.96 * float(reward[known].std(ddof=1)) / np.sqrt(known.sum())
    estimates["logging"] = PolicyValue(
        mean_reward,
        mean_reward - half,
        mean_reward + half,
        mean_reward,
        mean_reward - half,
        mean_reward + half,
        n=int(known.sum()),
    )

    effects = model.effects(features)
    curves, areas = {}, {}
    for offer in model.offers_:
        rows = np.isin(logged_action, [offer, NO_OFFER])
        curve = qini_curve(
            effects[offer].to_numpy()[rows],
            logged_action[rows] == offer,
            outcomes["outcome"].to_numpy()[rows],
            1.0 / logged_propensity[rows],
        )
        curves[offer], areas[offer] = curve, auuc(curve)
    terms = ips_terms(
        reward=reward[known],
        logged_action=logged_action[known],
        logged_propensity=logged_propensity[known],
        target=policies["learned"][known],
    )
    return PolicyReport(
        values=estimates,
        auuc=areas,
        qini=curves,
        best_single_offer=best_single,
        learned_ips_terms=terms,
    )


def oracle_comparison(
    chosen: pd.Series, truth: pd.DataFrame, eligible: pd.DataFrame
) -> dict[str, float | str]:
    """True net value of a policy against the oracle, best single offer and no offers.

    `truth` is the demo world's ground truth: one row per (customer_id, offer_id) with
    `delta_retention`, `clv_365` and `expected_cost`.
    """
    # The same value definition the policy optimises. (`delta_revenue_365`, where present, already
    # contains the revenue of the extra retention: adding it would count that twice.)
    net = truth["delta_retention"] * truth["clv_365"] - truth["expected_cost"]
    true_values = truth.assign(net=net).pivot(index="customer_id", columns="offer_id", values="net")
    customers = chosen.index.intersection(true_values.index)
    true_values = true_values.loc[customers]
    true_values.insert(0, NO_OFFER, 0.0)
    allowed = eligible.loc[customers, true_values.columns]
    masked = true_values.where(allowed, -np.inf)
    oracle = float(masked.max(axis=1).sum())
    picks = chosen.loc[customers].to_numpy()
    column = true_values.columns.get_indexer(pd.Index(picks))
    policy = float(true_values.to_numpy()[np.arange(len(customers)), column].sum())
    per_offer = true_values.where(allowed, 0.0).sum().drop(NO_OFFER)
    best_single = float(per_offer.max())
    return {
        "oracle_value": oracle,
        "policy_value": policy,
        "best_single_value": best_single,
        "best_single_offer": str(per_offer.idxmax()),
        "share_of_oracle": policy / oracle if oracle > 0 else float("nan"),
        "gain_over_best_single": policy / best_single - 1 if best_single > 0 else float("nan"),
        "customers": float(len(customers)),
    }

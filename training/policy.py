"""The next-best-offer policy: business rules, net value, exploration and campaigns.

Pure functions over frames indexed by customer, one column per action (`none` included), so the
same code decides in a batch campaign, in the service and in off-policy evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import NO_OFFER
from features.offers import Offer

PROFILE_COLUMNS = (
    "segment",
    "country",
    "language",
    "loyalty_member",
    "marketing_consent",
    "tenure_days",
)


def eligibility(
    profiles: pd.DataFrame,
    offers: list[Offer],
    recent_contacts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Which actions each customer may receive under the catalog's rules.

    Args:
        profiles: one row per customer with `PROFILE_COLUMNS`.
        offers: the catalog.
        recent_contacts: contacts per customer (rows) and offer (columns) in the last 30 days,
            for the contact-frequency cap; absent means none.

    Returns:
        Boolean frame, customers x (`none` + offers). `none` is always allowed.
    """
    language = profiles["language"].fillna("en").astype("str")
    allowed = {NO_OFFER: pd.Series(True, index=profiles.index)}
    for offer in offers:
        ok = pd.Series(True, index=profiles.index)
        if offer.marketing:
            ok &= profiles["marketing_consent"].fillna(False).astype(bool)
        rules = offer.eligibility
        if rules.segments is not None:
            ok &= profiles["segment"].isin(rules.segments)
        if rules.countries is not None:
            ok &= profiles["country"].isin(rules.countries)
        if rules.min_tenure_days is not None:
            ok &= profiles["tenure_days"].fillna(0) >= rules.min_tenure_days
        if rules.loyalty_member is not None:
            ok &= profiles["loyalty_member"].fillna(False).astype(bool) == rules.loyalty_member
        # An offer without a message in the customer's language cannot be sent.
        ok &= language.map(lambda lang, o=offer: o.message_for(lang) is not None).astype(bool)
        if offer.max_per_customer_30d is not None and recent_contacts is not None:
            sent = recent_contacts.reindex(profiles.index)
            count = sent[offer.offer_id] if offer.offer_id in sent else 0
            ok &= pd.Series(count, index=profiles.index).fillna(0) < offer.max_per_customer_30d
        allowed[offer.offer_id] = ok
    return pd.DataFrame(allowed)


def expected_costs(p_redeem: pd.DataFrame, offers: list[Offer]) -> pd.DataFrame:
    """Expected cost of each action: redemption probability x cost + contact cost."""
    costs = {NO_OFFER: pd.Series(0.0, index=p_redeem.index)}
    for offer in offers:
        if offer.offer_id in p_redeem:
            costs[offer.offer_id] = p_redeem[offer.offer_id] * offer.cost + offer.contact_cost
    return pd.DataFrame(costs)


def net_values(
    delta_retention: pd.DataFrame,
    clv: pd.Series,
    costs: pd.DataFrame,
    delta_revenue: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Expected net value of each action against doing nothing (`none` = 0).

    value(a) = Δretention(a) x CLV + Δrevenue(a) − expected cost(a), the contact cost included.
    """
    offers = [c for c in costs.columns if c != NO_OFFER and c in delta_retention]
    value = delta_retention[offers].mul(clv, axis=0)
    if delta_revenue is not None:
        value = value.add(delta_revenue[offers], fill_value=0.0)
    value = value - costs[offers]
    value.insert(0, NO_OFFER, 0.0)
    return value


def best_actions(values: pd.DataFrame, eligible: pd.DataFrame) -> pd.Series:
    """The eligible action of highest net value per customer (`none` when nothing is positive)."""
    masked = values.where(eligible[values.columns], -np.inf)
    return masked.idxmax(axis=1)


def explore(
    values: pd.DataFrame, eligible: pd.DataFrame, *, epsilon: float, rng: np.random.Generator
) -> tuple[pd.Series, pd.Series]:
    """Epsilon-greedy choice, and the propensity with which each choice was made.

    With probability `epsilon` the action is drawn uniformly from the eligible ones; the logged
    propensity keeps later training and off-policy evaluation unbiased.
    """
    probs = exploration_probabilities(values, eligible, epsilon=epsilon)
    cumulative = probs.to_numpy().cumsum(axis=1)
    draw = rng.random(len(probs))[:, None]
    column = np.minimum((draw > cumulative).sum(axis=1), probs.shape[1] - 1)
    chosen = pd.Series(probs.columns[column], index=probs.index)
    propensity = pd.Series(probs.to_numpy()[np.arange(len(probs)), column], index=probs.index)
    return chosen, propensity


def exploration_probabilities(
    values: pd.DataFrame, eligible: pd.DataFrame, *, epsilon: float
) -> pd.DataFrame:
    """Action probabilities of the epsilon-greedy policy (rows sum to 1)."""
    mask = eligible[values.columns].to_numpy(dtype=float)
    uniform = mask / mask.sum(axis=1, keepdims=True)
    greedy = values.columns.to_numpy() == best_actions(values, eligible).to_numpy()[:, None]
    return pd.DataFrame(
        (1 - epsilon) * greedy + epsilon * uniform, index=values.index, columns=values.columns
    )


@dataclass(frozen=True)
class Campaign:
    """A budgeted allocation: one action per chosen customer."""

    allocation: pd.DataFrame  # customer_id, offer_id, expected_value, expected_cost
    total_value: float
    total_cost: float
    upper_bound: float  # LP-relaxation bound on the value any allocation could reach

    @property
    def bound_gap(self) -> float:
        """Share of the LP bound the greedy allocation leaves on the table."""
        return 1 - self.total_value / self.upper_bound if self.upper_bound > 0 else 0.0


def plan_campaign(
    values: pd.DataFrame,
    costs: pd.DataFrame,
    eligible: pd.DataFrame,
    *,
    budget: float,
    offer_limits: dict[str, int] | None = None,
) -> Campaign:
    """Choose customers and actions to maximise total net value within a budget.

    Greedy by value per cost over (customer, action) pairs with positive value, one action per
    customer, respecting per-offer limits. The returned upper bound is the Lagrangian (LP) bound
    of the budget constraint alone, so `bound_gap` shows how close greedy came.
    """
    offers = [c for c in values.columns if c != NO_OFFER]
    masked = values[offers].where(eligible[offers])
    pairs = pd.DataFrame(
        {
            "customer_id": np.repeat(masked.index.to_numpy(), len(offers)),
            "offer_id": np.tile(offers, len(masked)),
            "expected_value": masked.to_numpy().ravel(),
            "expected_cost": costs[offers].reindex(masked.index).to_numpy().ravel(),
        }
    )
    pairs = pairs[pairs["expected_value"] > 0]
    pairs = pairs.assign(ratio=pairs["expected_value"] / pairs["expected_cost"].clip(lower=1e-9))
    pairs = pairs.sort_values("ratio", ascending=False, kind="stable")

    limits = dict(offer_limits or {})
    taken_customers: set[str] = set()
    chosen: list[int] = []
    spent = 0.0
    for position, customer, offer, cost in zip(
        range(len(pairs)),
        pairs["customer_id"],
        pairs["offer_id"],
        pairs["expected_cost"],
        strict=True,
    ):
        if customer in taken_customers or spent + cost > budget or limits.get(offer, 1) <= 0:
            continue
        taken_customers.add(customer)
        chosen.append(position)
        spent += cost
        if offer in limits:
            limits[offer] -= 1
    allocation = pairs.iloc[chosen].drop(columns="ratio").reset_index(drop=True)
    return Campaign(
        allocation=allocation,
        total_value=float(allocation["expected_value"].sum()),
        total_cost=float(allocation["expected_cost"].sum()),
        upper_bound=_lagrangian_bound(masked, costs[offers], budget),
    )


def _lagrangian_bound(values: pd.DataFrame, costs: pd.DataFrame, budget: float) -> float:
    """min over λ ≥ 0 of λ·B + Σ_i max(0, max_a v_ia − λ c_ia): the LP relaxation's value."""
    v = values.fillna(-np.inf).to_numpy()
    c = costs.to_numpy()

    def dual(lam: float) -> float:
        return lam * budget + np.maximum(0.0, (v - lam * c).max(axis=1)).sum()

    # The dual is convex in λ: a golden-section search on a bracket finds its minimum.
    low, high = 0.0, 1.0
    while dual(high) < dual(high / 2) and high < 1e9:
        high *= 2
    golden = (np.sqrt(5) - 1) / 2
    for _ in range(100):
        a = high - golden * (high - low)
        b = low + golden * (high - low)
        if dual(a) < dual(b):
            high = b
        else:
            low = a
    return float(min(dual(low), dual(0.0)))

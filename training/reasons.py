"""Reason codes: why a customer's churn risk is high, in words a CRM user understands.

The model's per-row contributions (LightGBM `pred_contrib`, TreeSHAP) say how much each feature
pushed this customer's risk up or down. The top-k features pushing it **up** become phrases written
from the customer's own values: "2 unresolved complaints", "no purchase for 74 days",
"NPS fell to 3", "purchases down 60% vs previous month".

Speed: picking the top k is one `argpartition` over the contribution matrix; phrases are then
rendered feature by feature over the rows that need that feature (a plain string format per row,
no model call), so a million rows take seconds.

Phrase rules match feature names by pattern: the `churn_features:2` names (`n_purchase_30d`,
`n_complaint_90d`, `n_offer_sent_90d`, `avg_nps`, `has_loyalty_join`, ...) and the plain spellings
(`purchases_30d`, `complaints_90d`, `mean_nps`); an unknown feature falls back to
"<name in words>: <value>". Trend features (`n_purchase_trend_30d`, `revenue_trend_30d`) are the
current window minus the previous one; with the current window's value in the row they are said
as a relative change ("purchases down 60% vs previous month").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.encoding import BIAS

Renderer = Callable[[object, "re.Match[str]", Mapping[str, object]], str]


def _missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(math.isnan(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _num(value: object) -> float:
    return float(value)  # type: ignore[arg-type]


def _count(n: float) -> str:
    return f"{n:.0f}"


def _plural(n: float, singular: str, plural: str | None = None) -> str:
    word = singular if round(n) == 1 else (plural or singular + "s")
    return f"{_count(n)} {word}"


def _money(value: float) -> str:
    return f"{value:,.0f}"


def _words(name: str) -> str:
    return name.replace("_", " ")


_SINGLE = {
    "event": "event",
    "events": "event",
    "purchase": "purchase",
    "purchases": "purchase",
    "complaint": "complaint",
    "complaints": "complaint",
    "complaint_resolved": "resolved complaint",
    "support_contact": "support contact",
    "support_contacts": "support contact",
    "visit": "visit",
    "visits": "visit",
    "refund": "refund",
    "refunds": "refund",
    "offer_sent": "offer sent",
    "offers_sent": "offer sent",
    "offer_redeemed": "offer redeemed",
    "offers_redeemed": "offer redeemed",
    "email_open": "email opened",
    "email_opens": "email opened",
    "referral": "referral",
    "referrals": "referral",
    "nps": "NPS answer",
    "csat": "CSAT answer",
    "loyalty_join": "loyalty sign-up",
    "cancellation": "cancellation",
    "cancellations": "cancellation",
    "other": "other event",
}
_PLURAL = {
    "offer sent": "offers sent",
    "offer redeemed": "offers redeemed",
    "email opened": "emails opened",
}


def _nouns(thing: str) -> tuple[str, str]:
    singular = _SINGLE.get(thing, _words(thing))
    return singular, _PLURAL.get(singular, singular + "s")


def _span(days: str) -> str:
    return {"7": "week", "30": "month", "365": "year"}.get(days, f"{days} days")


def _days_since(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    thing = match.group(1)
    if thing in ("event", "purchase", "visit"):
        noun = "activity" if thing == "event" else thing
        if _missing(value):
            return f"no {noun} yet"
        return f"no {noun} for {_plural(_num(value), 'day')}"
    noun = _nouns(thing)[0]
    if _missing(value):
        return f"no {noun} yet"
    return f"last {noun} {_plural(_num(value), 'day')} ago"


def _windowed_count(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    singular, plural = _nouns(match.group(1))
    span = _span(match.group(2))
    if _missing(value) or _num(value) == 0:
        return f"no {plural} in the last {span}"
    n = _num(value)
    return f"{_count(n)} {singular if round(n) == 1 else plural} in the last {span}"


def _money_in_window(what: str, none: str) -> Renderer:
    def render(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
        span = _span(match.group(1))
        if _missing(value) or _num(value) <= 0:
            return f"{none} in the last {span}"
        return f"{what} {_money(_num(value))} in the last {span}"

    return render


def _trend(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    """`n_purchase_trend_30d` / `revenue_trend_30d`: current window minus the previous one.

    With the current window's value in the row (`n_purchase_30d`, `revenue_30d`) the change is
    said relative to the previous window ("purchases down 60% vs previous month").
    """
    counted, thing, days = match.group(1), match.group(2), match.group(3)
    noun = "spending" if thing == "revenue" else _nouns(thing)[1]
    previous_span = f"previous {_span(days)}"
    if _missing(value):
        return f"{noun} trend unknown"
    change = _num(value)
    current = row.get(f"{counted or ''}{thing}_{days}d")
    if current is not None and not _missing(current):
        before = _num(current) - change
        if before > 0:
            ratio = change / before
            if abs(ratio) < 0.005:
                return f"{noun} flat vs {previous_span}"
            direction = "down" if ratio < 0 else "up"
            return f"{noun} {direction} {abs(ratio) * 100:.0f}% vs {previous_span}"
    if change == 0:
        return f"{noun} flat vs {previous_span}"
    if thing == "revenue":
        less = "less" if change < 0 else "more"
        return f"spent {_money(abs(change))} {less} than the {previous_span}"
    fewer = "fewer" if change < 0 else "more"
    return f"{_count(abs(change))} {fewer} {noun} than the {previous_span}"


def _unresolved(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    if _missing(value) or _num(value) == 0:
        return "no unresolved complaints"
    return f"{_plural(_num(value), 'unresolved complaint')}"


def _open_complaint(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    if _missing(value) or _num(value) == 0:
        return "no open complaint"
    days = row.get("open_complaint_days")
    if days is None or _missing(days):
        return "a complaint is open"
    return f"a complaint open for {_plural(_num(days), 'day')}"


def _share(what: str) -> Renderer:
    def render(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
        if _missing(value):
            return f"{what}: not known yet"
        return f"{what}: {_num(value) * 100:.0f}%"

    return render


def _offers_sent(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    if _missing(value) or _num(value) == 0:
        return "never sent an offer"
    return f"{_plural(_num(value), 'offer')} sent so far"


def _last_score(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    survey = match.group(1)
    label = survey.upper()
    scale = "/5" if survey == "csat" else ""
    if _missing(value):
        return f"no {label} answer yet"
    mean = row.get(f"avg_{survey}", row.get(f"mean_{survey}"))
    fell = mean is not None and not _missing(mean) and _num(mean) > _num(value)
    verb = "fell to" if fell else "of"
    return f"{label} {verb} {_num(value):.0f}{scale}"


def _mean_score(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    survey = match.group(2)
    label = survey.upper()
    if _missing(value):
        return f"no {label} answers yet"
    scale = "/5" if survey == "csat" else ""
    return f"average {label} {_num(value):.1f}{scale}"


def _resolution(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    if _missing(value):
        return "complaints not resolved yet"
    return f"complaints took {_num(value):.0f} days to resolve on average"


def _tenure(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    if _missing(value):
        return "tenure unknown"
    days = _num(value)
    if days < 365:
        return f"customer for only {_plural(days, 'day')}"
    return f"customer for {days / 365:.1f} years"


def _flag(yes: str, no: str) -> Renderer:
    def render(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
        if _missing(value):
            return f"{no} (unknown)"
        truthy = str(value).strip().lower() in ("true", "1", "1.0", "yes", "y", "t")
        return yes if truthy else no

    return render


def _attribute(template: str) -> Renderer:
    def render(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
        return template.format(value="unknown" if _missing(value) else value)

    return render


def _generic(value: object, match: re.Match[str], row: Mapping[str, object]) -> str:
    name = _words(match.group(0))
    if _missing(value):
        return f"{name}: missing"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
        text = f"{number:.0f}" if number.is_integer() else f"{number:.2f}"
        return f"{name}: {text}"
    return f"{name}: {value}"


@dataclass(frozen=True)
class PhraseRule:
    """A feature-name pattern, how to say a value of a matching feature, and what else it reads.

    `context` names the other features of the same row a phrase compares with (e.g. `last_nps`
    reads `avg_nps` to say "fell to"); only those are gathered, which keeps rendering cheap.
    """

    pattern: re.Pattern[str]
    render: Renderer
    context: Callable[[re.Match[str]], tuple[str, ...]] = lambda match: ()


def _rule(
    pattern: str,
    render: Renderer,
    context: Callable[[re.Match[str]], tuple[str, ...]] = lambda match: (),
) -> PhraseRule:
    return PhraseRule(re.compile(pattern), render, context)


# First match wins, so the specific patterns come before the generic `<thing>_<N>d` count.
RULES: tuple[PhraseRule, ...] = (
    _rule(r"^days_since_last_(\w+)$", _days_since),
    _rule(r"^unresolved_complaints$", _unresolved),
    _rule(r"^open_complaint(_days)?$", _open_complaint, lambda m: ("open_complaint_days",)),
    _rule(r"^offer_redemption_rate$", _share("offers redeemed")),
    _rule(r"^online_share_(\d+)d$", _share("purchases online")),
    _rule(r"^n_offer_sent_all$", _offers_sent),
    _rule(
        r"^(n_)?(\w+?)_trend_(\d+)d$",
        _trend,
        lambda m: (f"{m.group(1) or ''}{m.group(2)}_{m.group(3)}d",),
    ),
    _rule(r"^revenue_(\d+)d$", _money_in_window("spent", "no spending")),
    _rule(r"^refund_amount_(\d+)d$", _money_in_window("refunds of", "no refunds")),
    _rule(r"^avg_purchase_(\d+)d$", _money_in_window("average purchase", "no purchase")),
    _rule(r"^last_(nps|csat)$", _last_score, lambda m: (f"avg_{m.group(1)}", f"mean_{m.group(1)}")),
    _rule(r"^(avg|mean)_(nps|csat)$", _mean_score),
    _rule(r"^avg_resolution_days$", _resolution),
    _rule(r"^(?:n_)?(\w+?)_(\d+)d$", _windowed_count),
    _rule(r"^tenure_days$", _tenure),
    _rule(r"^(loyalty_member|has_loyalty_join)$", _flag("loyalty member", "not a loyalty member")),
    _rule(r"^marketing_consent$", _flag("marketing consent", "no marketing consent")),
    _rule(r"^segment$", _attribute("{value} segment")),
    _rule(r"^country$", _attribute("country {value}")),
    _rule(r"^language$", _attribute("language {value}")),
)
_GENERIC = PhraseRule(re.compile(r"^.*$"), _generic)


def rule_for(feature: str) -> tuple[PhraseRule, re.Match[str]]:
    """The first rule whose pattern matches `feature` (the generic rule if none does)."""
    for rule in RULES:
        match = rule.pattern.match(feature)
        if match:
            return rule, match
    generic = _GENERIC.pattern.match(feature)
    assert generic is not None  # ".*" matches every string
    return _GENERIC, generic


def phrase(feature: str, value: object, row: Mapping[str, object] | None = None) -> str:
    """Say one feature value in words.

    Args:
        feature: Feature name, e.g. "unresolved_complaints".
        value: The customer's value of it.
        row: The customer's other feature values, for phrases that compare (e.g. `last_nps` vs
            `mean_nps` gives "NPS fell to 3").

    Returns:
        The phrase, e.g. "2 unresolved complaints".
    """
    rule, match = rule_for(feature)
    return rule.render(value, match, row if row is not None else {})


def reason_codes(
    contributions: pd.DataFrame,
    features: pd.DataFrame,
    *,
    top_k: int = 3,
    min_contribution: float = 0.0,
) -> pd.DataFrame:
    """Top-k churn drivers per row, as feature names, weights and phrases.

    Args:
        contributions: Per-row contributions, one column per feature (a `bias` column is ignored),
            e.g. from `ChurnModel.contributions`. Positive = pushes towards churn.
        features: The same rows' feature values (aligned by position), used for the wording.
        top_k: How many reasons per row.
        min_contribution: Only contributions strictly above this count as reasons.

    Returns:
        Frame with the index of `contributions` and columns `reason_1..k` (phrase),
        `reason_feature_1..k` (strings) and `reason_weight_1..k` (floats); a slot without a
        reason is missing (NaN).
    """
    if len(contributions) != len(features):
        raise ValueError(
            f"contributions has {len(contributions)} rows but features has {len(features)}"
        )
    names = [c for c in contributions.columns if c != BIAS]
    matrix = contributions[names].to_numpy(dtype=float)
    n, f = matrix.shape
    k = min(top_k, f)
    out: dict[str, object] = {}
    if n == 0 or k == 0:
        top = np.zeros((n, 0), dtype=int)
    else:
        part = np.argpartition(-matrix, k - 1, axis=1)[:, :k]
        part_values = np.take_along_axis(matrix, part, axis=1)
        order = np.argsort(-part_values, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
    rows = np.arange(n)
    frame = features.reset_index(drop=True)
    for j in range(top_k):
        phrases = np.full(n, None, dtype=object)
        chosen = np.full(n, None, dtype=object)
        weights = np.full(n, np.nan)
        if j < k:
            index = top[:, j]
            weight = matrix[rows, index]
            valid = weight > min_contribution
            weights[valid] = weight[valid]
            for feature_index in np.unique(index[valid]):
                mask = valid & (index == feature_index)
                name = names[feature_index]
                chosen[mask] = name
                rule, match = rule_for(name)
                phrases[mask] = _render(rule, match, name, frame, mask)
        out[f"reason_{j + 1}"] = phrases
        out[f"reason_feature_{j + 1}"] = chosen
        out[f"reason_weight_{j + 1}"] = weights
    ordered = [f"reason_{j + 1}" for j in range(top_k)]
    ordered += [f"reason_feature_{j + 1}" for j in range(top_k)]
    ordered += [f"reason_weight_{j + 1}" for j in range(top_k)]
    return pd.DataFrame({c: out[c] for c in ordered}, index=contributions.index)


def _render(
    rule: PhraseRule, match: re.Match[str], name: str, frame: pd.DataFrame, mask: np.ndarray
) -> list[str]:
    n = int(mask.sum())
    values = frame.loc[mask, name].tolist() if name in frame.columns else [None] * n
    # Only the columns a rule compares with are gathered, so a million rows stay cheap.
    needed = [c for c in rule.context(match) if c in frame.columns]
    if not needed:
        return [rule.render(value, match, {}) for value in values]
    others = [frame.loc[mask, c].tolist() for c in needed]
    return [
        rule.render(value, match, dict(zip(needed, extra, strict=True)))
        for value, *extra in zip(values, *others, strict=True)
    ]

"""The demo world: a synthetic business whose churn drivers and offer effects are known.

Customers live in weekly steps. Each has static traits (segment, basket size, purchase rate,
channel mix, price sensitivity, a base churn risk) and a latent state (engagement, satisfaction,
an open complaint, loyalty membership, the offers whose effect is still running). Every week the
business may run a campaign, the customer may churn (a weekly hazard), and the customer generates
the week's events. Churn is permanent: a churned customer generates no more events, apart from
an explicit `cancellation` for some at the moment of churn (the business may still send offers to
them, as it cannot see latent churn).

The ground truth is the exact expectation of the same dynamics from `as_of` onwards, for every
customer and every action, averaged over `TRUTH_PATHS` simulated latent paths (churn and purchases
are integrated analytically along each path, so the average is smooth).

Everything is vectorised over customers; the only Python loop runs over the ~150 weeks.
See docs/demo-world.md for the story and the measured figures.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from features.contract import EVENT_TYPES, NO_OFFER

# --- time -----------------------------------------------------------------------------------------
US = 1_000_000  # timestamps are int64 microseconds internally
HOUR_US = 3_600 * US
DAY_US = 24 * HOUR_US
WEEK_US = 7 * DAY_US
NEVER_US = np.iinfo(np.int64).max
HORIZON_DAYS = 90  # churn label horizon H (data contract)
CLV_DAYS = 365
PRE_WINDOW_SIGNUPS_FROM = "2019-01-01"
SHARE_SIGNED_UP_BEFORE = 0.45  # the rest sign up during the simulated window
# Events happen between 07:00 and 24:00; weekend a little busier. Campaigns go out at 06:00-07:00,
# so a campaign always sees the state left by the previous week.
DAY_OF_WEEK = np.array([0.13, 0.13, 0.13, 0.14, 0.15, 0.18, 0.14])  # Monday first
EVENT_DAY_STARTS_H = 7.0
CAMPAIGN_HOUR = 6

# --- who the customers are ----------------------------------------------------------------------
COUNTRIES = (  # (country, language, share); Swiss customers speak de-CH, Belgians fr or nl
    ("DE", "de", 0.22),
    ("AT", "de", 0.03),
    ("CH", "de-CH", 0.04),
    ("FR", "fr", 0.14),
    ("BE", "fr", 0.02),
    ("BE", "nl", 0.02),
    ("NL", "nl", 0.08),
    ("ES", "es", 0.10),
    ("GB", "en", 0.13),
    ("US", "en", 0.22),
)
SEGMENTS = ("retail", "business", "student")
SEGMENT_SHARE = np.array([0.65, 0.18, 0.17])
SEGMENT_PURCHASES_PER_WEEK = np.array([0.24, 0.38, 0.20])  # median base rate
SEGMENT_BASKET = np.array([38.0, 120.0, 17.0])  # median basket, currency units
SEGMENT_HAZARD = np.array([0.0, -0.4, 0.35])  # log-odds shift of the weekly churn hazard
SEGMENT_ONLINE = np.array([[2.0, 2.0], [3.0, 2.0], [4.0, 1.5]])  # Beta(a, b) of the online share
SEGMENT_CANCELS = np.array([0.25, 0.6, 0.15])  # share of churners who cancel explicitly
SEGMENT_AGE = np.array([[44.0, 13.0], [45.0, 10.0], [22.0, 2.5]])  # mean, sd
SEGMENT_AGE_RANGE = np.array([[18, 85], [21, 75], [18, 30]])
ACQUISITION = ("search", "social", "referral", "store", "partner")
ACQUISITION_SHARE = np.array([0.35, 0.20, 0.15, 0.20, 0.10])
ACQUISITION_HAZARD = np.array([0.0, 0.25, -0.35, -0.1, 0.15])  # referred customers stay longer
MARKETING_CONSENT = 0.8
LOYAL_BEFORE_WINDOW = 0.35
LOYAL_AT_SIGNUP = 0.2
RATE_SPREAD = 0.6  # log-sd of the customer's purchase rate around the segment median
BASKET_SPREAD = 0.35  # log-sd of the customer's basket around the segment median
ITEM_SPREAD = 0.45  # log-sd of one purchase around the customer's basket
BASE_RISK_SPREAD = 0.2  # sd of the customer's own churn log-odds
SATISFACTION_SPREAD = 0.7
PRICE_SENSITIVITY_BASKET = 40.0  # below this basket, customers lean price-sensitive
PREMIUM_BASKET = 80.0  # above this, a discount feels cheap

# --- churn: weekly hazard = sigmoid(log-odds) x offer multipliers ------------------------------
# Real churn is not additive in what the business sees (docs/demo-world.md, "Churn"): it jumps
# once a customer buys at well under their own usual pace, gathers at renewal moments, grows
# with the time a complaint stays unresolved, and the drivers weigh differently by segment.
HAZARD_LOGIT = -6.4  # about 0.17 % a week for an average settled customer
HAZARD_ENGAGEMENT = np.array([2.2, 1.4, 3.0])  # by segment: students drift off, business stays
ENGAGEMENT_SATURATION = 0.2  # engagement above this protects no further
HAZARD_LAPSE = 2.0  # a jump once buying at under half the customer's own usual pace ...
LAPSE_ENGAGEMENT = -0.7  # ... i.e. engagement below log(0.5)
LAPSE_WIDTH = 0.1  # how sharp the jump is
HAZARD_SATISFACTION = 1.0  # low satisfaction shows in NPS / CSAT answers
HAZARD_UNRESOLVED = 2.0  # an open complaint, in full once it has waited COMPLAINT_PATIENCE_WEEKS
COMPLAINT_PATIENCE_WEEKS = 8.0  # a complaint fixed within days costs almost nothing
HAZARD_RENEWAL = np.array([3.5, 4.0, 3.0])  # by segment, in the weeks before each anniversary
RENEWAL_WEEKS = 3.0  # the yearly renewal is decided in the last weeks before the anniversary
RENEWAL_DISENGAGED = 3.0  # per unit of engagement below 0: who uses it less renews less
WEEKS_PER_YEAR = 365.25 / 7
HAZARD_NEW_CUSTOMER = 0.8  # early-life churn, fading over NEW_CUSTOMER_WEEKS
NEW_CUSTOMER_WEEKS = 13.0
HAZARD_LOYAL = -0.3
HAZARD_MAX = 0.9
SATISFACTION_OPEN_COMPLAINT = 1.0
SATISFACTION_RECENT_COMPLAINTS = 0.5

# --- latent engagement: log multiplier of purchase and visit rates -------------------------------
ENGAGEMENT_PERSISTENCE = 0.97
ENGAGEMENT_NOISE = 0.07
ENGAGEMENT_AT_SIGNUP = (0.2, 0.3)  # mean, sd: a short honeymoon
FADE_START = 0.014  # weekly chance of starting to drift away (found a competitor, moved, ...)
FADE_SATISFACTION = 0.7  # log-odds of starting to fade, per unit of (low) satisfaction
FADE_RECOVER = 0.02
FADE_DRIFT = 0.12  # weekly fall of engagement while fading
FADING_BEFORE_WINDOW = 0.03

# --- service: complaints, resolutions, surveys ---------------------------------------------------
COMPLAINTS_PER_WEEK = 0.006  # median; log-sd COMPLAINT_SPREAD
COMPLAINT_SPREAD = 0.7
COMPLAINT_QUICK = 0.55  # resolved within days
COMPLAINT_NEVER = 0.15  # never resolved; the rest within SLOW_RESOLUTION_WEEKS
SLOW_RESOLUTION_WEEKS = (2, 26)
COMPLAINT_MEMORY = 0.85  # weekly decay of the recent-complaints level
SUPPORT_PER_WEEK = 0.02
SUPPORT_OPEN_COMPLAINT = 0.25
CSAT_AFTER_SUPPORT = 0.5
NPS_PER_WEEK = 0.03
REFUND_SHARE = 0.04
REFUND_SHARE_OPEN_COMPLAINT = 0.12
VISITS_PER_WEEK = 0.9
EMAIL_OPENS_PER_WEEK = 0.35
LOYALTY_JOIN_PER_WEEK = 0.004
REFERRAL_PER_WEEK = 0.003

# --- season: multiplier of the purchase rate by day of year ------------------------------------
SEASON_BUMPS = (  # (day of year, width in days, height)
    (20, 15, -0.15),  # January lull
    (220, 25, -0.12),  # August holidays
    (332, 4, 0.5),  # Black Friday
    (352, 10, 0.9),  # Christmas
)

# --- offers: catalog, true effects, redemption ---------------------------------------------
OFFERS_CATALOG: tuple[dict[str, Any], ...] = (
    {
        "offer_id": "discount_10",
        "kind": "discount",
        "cost": 12.0,
        "contact_cost": 0.2,
        "marketing": True,
        "messages": {
            "en": "10% off your next order",
            "de": "10 % Rabatt auf Ihre nächste Bestellung",
            "fr": "10 % de réduction sur votre prochaine commande",
            "es": "10 % de descuento en tu próximo pedido",
            "nl": "10% korting op je volgende bestelling",
        },
        "eligibility": {"min_tenure_days": 30},
        "max_per_customer_30d": 1,
    },
    {
        "offer_id": "free_shipping",
        "kind": "free_shipping",
        "cost": 8.0,
        "contact_cost": 0.2,
        "marketing": True,
        "messages": {
            "en": "Free shipping on your next three orders",
            "de": "Kostenloser Versand für Ihre nächsten drei Bestellungen",
            "fr": "Livraison gratuite pour vos trois prochaines commandes",
            "es": "Envío gratis en tus próximos tres pedidos",
            "nl": "Gratis verzending voor je volgende drie bestellingen",
        },
        "eligibility": {"countries": ["DE", "AT", "CH", "FR", "BE", "NL", "ES", "GB"]},
        "max_per_customer_30d": 1,
    },
    {
        "offer_id": "loyalty_points",
        "kind": "loyalty_points",
        "cost": 10.0,
        "contact_cost": 0.2,
        "marketing": True,
        "messages": {
            "en": "500 bonus points for you",
            "de": "500 Bonuspunkte für Sie",
            "fr": "500 points bonus pour vous",
            "es": "500 puntos extra para ti",
            "nl": "500 bonuspunten voor jou",
        },
        "eligibility": {"loyalty_member": True, "min_tenure_days": 60},
        "max_per_customer_30d": 1,
    },
    {
        "offer_id": "apology_call",
        "kind": "apology_call",
        "cost": 5.0,
        "contact_cost": 12.0,
        "marketing": False,  # a service action: allowed without marketing consent
        "messages": {
            "en": "A personal call from our service team",
            "de": "Ein persönlicher Anruf unseres Serviceteams",
            "fr": "Un appel personnel de notre service client",
            "es": "Una llamada personal de nuestro equipo de atención",
            "nl": "Een persoonlijk telefoontje van onze klantenservice",
        },
        "max_per_customer_30d": 1,
    },
    {
        "offer_id": "gift",
        "kind": "gift",
        "cost": 20.0,
        "contact_cost": 0.5,
        "marketing": True,
        "messages": {  # no Dutch text: Dutch speakers are not eligible
            "en": "A small gift with your next order",
            "de": "Ein kleines Geschenk zu Ihrer nächsten Bestellung",
            "fr": "Un petit cadeau avec votre prochaine commande",
            "es": "Un pequeño regalo con tu próximo pedido",
        },
        "eligibility": {"min_tenure_days": 90},
        "max_per_customer_30d": 1,
        "budget": 20_000.0,
    },
)
OFFER_IDS = tuple(str(offer["offer_id"]) for offer in OFFERS_CATALOG)
ACTIONS = (NO_OFFER, *OFFER_IDS)
DISCOUNT, FREE_SHIPPING, LOYALTY_POINTS, APOLOGY_CALL, GIFT = range(len(OFFER_IDS))
EFFECT_WEEKS = 13  # an offer changes the hazard for ~90 days; a repeat while it runs adds nothing
DISCOUNT_BOOST = 1.1  # a discount also lifts the purchase rate ...
DISCOUNT_BOOST_WEEKS = 4  # ... for a month
# True effects are log multipliers of the weekly churn hazard (negative helps).
EFFECT_DISCOUNT_PRICE_SENSITIVE = -1.8  # times the price sensitivity in [0, 1]
EFFECT_DISCOUNT_PREMIUM = 0.9  # big-basket customers feel cheapened
EFFECT_FREE_SHIPPING = -1.6  # times online leaning x heaviness
ONLINE_LEANING = (0.5, 0.9)  # online shares between which free shipping starts to matter fully
HEAVY_BUYER_RATE = 0.3  # purchases a week at which free shipping counts fully
EFFECT_LOYALTY_POINTS = -1.0  # members only
EFFECT_APOLOGY_CALL = -2.0  # with an open complaint; nothing otherwise
EFFECT_GIFT = np.array([-0.4, 0.5, -0.8])  # by segment: business customers find it off-key
EFFECT_NOISE = 0.1  # unobservable part, per customer and offer
REDEEM_WEEKS = 4  # redemptions happen within 28 days of the offer

# --- logging policy: monthly campaigns, randomised over eligible actions --------------------
FIRST_CAMPAIGN_WEEK = 8
CAMPAIGN_EVERY_WEEKS = 4
CAMPAIGN_SHARE = 0.3  # share of observably active customers who get a decision
ACTIVE_DAYS = 90  # "active" to the business: a purchase (or the signup) within this many days
POLICY_NONE_WEIGHT = 0.55  # the control `none`: 13 % with every offer eligible, ~30 % overall
POLICY_WEIGHTS = np.array(  # rows: SEGMENTS, columns: OFFER_IDS
    [
        [1.0, 1.0, 1.0, 0.15, 0.5],
        [0.5, 1.5, 1.0, 0.15, 0.25],
        [2.0, 1.0, 1.0, 0.15, 0.5],
    ]
)
POLICY_APOLOGY_OPEN_COMPLAINT = 6.0  # the business calls people who complained more often

# --- ground truth -----------------------------------------------------------------------------
TRUTH_PATHS = 32  # latent paths averaged per customer (Monte Carlo sd of delta_retention ~0.002)

_COUNTRY_CODES = np.array([country for country, _, _ in COUNTRIES])
_LANGUAGES = np.array([language for _, language, _ in COUNTRIES])
_BASE_LANGUAGES = np.array([language.split("-")[0] for language in _LANGUAGES])
CHANNELS = ("web", "app", "store", "phone", "email", "chat")
WEB, APP, STORE, PHONE, EMAIL, CHAT = range(len(CHANNELS))
TYPE = {name: code for code, name in enumerate(EVENT_TYPES)}


# --- the result -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoWorld:
    """A generated world: contract tables, the offers catalog and the ground truth."""

    customers: pd.DataFrame
    events: pd.DataFrame
    offers: list[dict[str, Any]]
    truth: pd.DataFrame
    as_of: pd.Timestamp

    def write(self, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet") -> dict[str, Path]:
        """Write customers, events, offers.yaml and ground_truth; return the paths by name."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "customers": out_dir / f"customers.{fmt}",
            "events": out_dir / f"events.{fmt}",
            "offers": out_dir / "offers.yaml",
            "ground_truth": out_dir / f"ground_truth.{fmt}",
        }
        for name, frame in (
            ("customers", self.customers),
            ("events", self.events),
            ("ground_truth", self.truth),
        ):
            if fmt == "parquet":
                frame.to_parquet(paths[name], index=False)
            else:
                frame.to_csv(paths[name], index=False)
        text = yaml.safe_dump({"offers": self.offers}, sort_keys=False, allow_unicode=True)
        paths["offers"].write_text(text, encoding="utf-8")
        return paths


def offers_catalog() -> list[dict[str, Any]]:
    """The demo world's offers catalog (a fresh copy, fields as in the data contract)."""
    return copy.deepcopy(list(OFFERS_CATALOG))


def policy_probabilities(
    segments: np.ndarray | pd.Series, open_complaint: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """The logging policy: probabilities over `ACTIONS` (`none` first) for each decision.

    Args:
        segments: the customers' segments (names from `SEGMENTS`).
        open_complaint: whether each customer has a complaint without a resolution yet.
        eligible: (decisions, offers) booleans, columns in `OFFER_IDS` order.

    Returns:
        (decisions, 1 + offers) probabilities; rows sum to 1 and ineligible offers get 0.
    """
    codes = pd.Index(SEGMENTS).get_indexer(pd.Index(np.asarray(segments, dtype=object)))
    if (codes < 0).any():
        raise ValueError(f"unknown segment; expected one of {SEGMENTS}")
    return _policy_probabilities(codes, np.asarray(open_complaint, bool), np.asarray(eligible))


def generate_world(
    n_customers: int = 10_000,
    seed: int = 0,
    *,
    start: str = "2024-01-01",
    end: str = "2026-09-30",
) -> DemoWorld:
    """Simulate the demo world; pure and deterministic given its arguments.

    Args:
        n_customers: customers, including those who sign up during the window.
        seed: random seed; the same seed gives the same world.
        start: first day of the history (it begins on the first whole week from here).
        end: end of the history (exclusive) and `as_of` of the ground truth.

    Returns:
        The world: contract tables, the offers catalog and the ground truth at `as_of`.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be positive")
    clock = _Clock.between(pd.Timestamp(start), pd.Timestamp(end))
    rng = np.random.default_rng(seed)
    people = _draw_customers(rng, n_customers, clock)
    state = _initial_state(rng, people, clock)
    log = _Log()
    _simulate(rng, people, state, log, clock, range(clock.weeks))
    truth = _ground_truth(rng, people, state, clock.weeks, clock)
    return DemoWorld(
        customers=_customers_frame(people, state),
        events=_events_frame(log, people, state, clock),
        offers=offers_catalog(),
        truth=truth,
        as_of=pd.Timestamp(clock.end_us, unit="us"),
    )


# --- time grid ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Clock:
    origin_us: int  # start of week 0; whole weeks end exactly at `end`
    weeks: int
    end_us: int
    first_weekday: int  # weekday of the origin, Monday = 0

    @staticmethod
    def between(start: pd.Timestamp, end: pd.Timestamp) -> _Clock:
        weeks = (end - start).days // 7
        shortest = FIRST_CAMPAIGN_WEEK + 2 * EFFECT_WEEKS
        if weeks < shortest:
            raise ValueError(f"the window from start to end must span at least {shortest} weeks")
        origin = end - pd.Timedelta(weeks=weeks)
        return _Clock(
            origin_us=_us(origin), weeks=weeks, end_us=_us(end), first_weekday=origin.weekday()
        )

    def week_start(self, week: Any) -> Any:
        return self.origin_us + week * WEEK_US


def _us(moment: pd.Timestamp) -> int:
    return int(moment.value) // 1_000  # Timestamp.value is in nanoseconds whatever the unit


def _day_of_year(at_us: np.ndarray) -> np.ndarray:
    days = (at_us // DAY_US).astype("datetime64[D]")
    return (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)


def _season(week_start_us: int) -> float:
    day = _day_of_year(np.array([week_start_us + WEEK_US // 2]))[0]
    factor = 1.0
    for peak, width, height in SEASON_BUMPS:
        distance = min(abs(day - peak), 365 - abs(day - peak))  # wraps around New Year
        factor += height * np.exp(-((distance / width) ** 2))
    return float(factor)


def _week_profile(clock: _Clock) -> np.ndarray:
    """Share of a week's events on each day, from the weekday that weeks start on."""
    profile = np.roll(DAY_OF_WEEK, -clock.first_weekday)
    return profile / profile.sum()


def _week_weights(days: int, clock: _Clock) -> np.ndarray:
    """Share of each week's events that falls inside a horizon of `days` (the last week may be
    partial)."""
    full, rest = divmod(days, 7)
    partial = [float(_week_profile(clock)[:rest].sum())] if rest else []
    return np.array([1.0] * full + partial)


def _times_in_week(
    rng: np.random.Generator, week_start_us: Any, size: int, clock: _Clock
) -> np.ndarray:
    """Event times: churn, purchases and everything else share this profile, which keeps the
    ground truth's "purchase before churn" integral exact."""
    day = np.searchsorted(np.cumsum(_week_profile(clock)), rng.random(size))
    day = np.minimum(day, 6)
    hours = EVENT_DAY_STARTS_H + (24 - EVENT_DAY_STARTS_H) * rng.beta(2.2, 1.8, size)
    seconds = np.floor(hours * 3600).astype(np.int64)
    return week_start_us + day.astype(np.int64) * DAY_US + seconds * US


def _uniform_us(rng: np.random.Generator, low_us: int, high_us: int, size: int) -> np.ndarray:
    """Whole seconds, uniform in [low, high)."""
    return rng.integers(low_us // US, high_us // US, size) * US


# --- customers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _People:
    """Static traits of every customer (arrays indexed by customer)."""

    signup_us: np.ndarray
    country: np.ndarray  # index into COUNTRIES
    segment: np.ndarray  # index into SEGMENTS
    acquisition: np.ndarray  # index into ACQUISITION
    age: np.ndarray
    consent: np.ndarray
    rate: np.ndarray  # base purchases a week
    basket: np.ndarray  # median purchase amount
    online: np.ndarray  # share of purchases made on web or app
    app: np.ndarray  # share of online purchases made in the app
    price_sensitivity: np.ndarray  # in [0, 1]; high for small-basket customers
    base_risk: np.ndarray  # churn log-odds shift
    satisfaction: np.ndarray  # baseline satisfaction
    complaint_rate: np.ndarray
    visit_rate: np.ndarray
    email_rate: np.ndarray
    cancels: np.ndarray  # churns with an explicit cancellation
    effect_noise: np.ndarray  # (customers, offers), the unobservable part of the effects
    engagement_at_signup: np.ndarray

    def __len__(self) -> int:
        return len(self.signup_us)

    def take(self, idx: np.ndarray) -> _People:
        return _People(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def _draw_customers(rng: np.random.Generator, n: int, clock: _Clock) -> _People:
    before = rng.random(n) < SHARE_SIGNED_UP_BEFORE
    first_day = _us(pd.Timestamp(PRE_WINDOW_SIGNUPS_FROM)) // DAY_US
    origin_day, end_day = clock.origin_us // DAY_US, clock.end_us // DAY_US
    signup_day = np.where(
        before,
        rng.integers(first_day, origin_day, n),
        rng.integers(origin_day, end_day, n),
    )
    shares = np.array([share for _, _, share in COUNTRIES])
    country = rng.choice(len(COUNTRIES), n, p=shares / shares.sum())
    segment = rng.choice(len(SEGMENTS), n, p=SEGMENT_SHARE)
    acquisition = rng.choice(len(ACQUISITION), n, p=ACQUISITION_SHARE)
    mean_age, sd_age = SEGMENT_AGE[segment].T
    low_age, high_age = SEGMENT_AGE_RANGE[segment].T
    age = np.clip(np.rint(rng.normal(mean_age, sd_age)), low_age, high_age).astype(np.int64)

    rate = SEGMENT_PURCHASES_PER_WEEK[segment] * rng.lognormal(0.0, RATE_SPREAD, n)
    basket = SEGMENT_BASKET[segment] * rng.lognormal(0.0, BASKET_SPREAD, n)
    online_a, online_b = SEGMENT_ONLINE[segment].T
    online = rng.beta(online_a, online_b)
    online = np.where(acquisition == ACQUISITION.index("store"), 0.6 * online, online)
    # Price sensitivity is what small baskets reveal, plus a part no history shows.
    lean = -2.0 * np.log(basket / PRICE_SENSITIVITY_BASKET) + rng.normal(0.0, 0.5, n)
    return _People(
        signup_us=signup_day * DAY_US,
        country=country,
        segment=segment,
        acquisition=acquisition,
        age=age,
        consent=rng.random(n) < MARKETING_CONSENT,
        rate=rate,
        basket=basket,
        online=online,
        app=rng.beta(2.0, 2.0, n),
        price_sensitivity=1.0 / (1.0 + np.exp(-lean)),
        base_risk=SEGMENT_HAZARD[segment]
        + ACQUISITION_HAZARD[acquisition]
        + rng.normal(0.0, BASE_RISK_SPREAD, n),
        satisfaction=rng.normal(0.0, SATISFACTION_SPREAD, n),
        complaint_rate=COMPLAINTS_PER_WEEK * rng.lognormal(0.0, COMPLAINT_SPREAD, n),
        visit_rate=VISITS_PER_WEEK * (0.5 + online) * rng.lognormal(0.0, 0.5, n),
        email_rate=EMAIL_OPENS_PER_WEEK * rng.lognormal(0.0, 0.5, n),
        cancels=rng.random(n) < SEGMENT_CANCELS[segment],
        effect_noise=rng.normal(0.0, EFFECT_NOISE, (n, len(OFFER_IDS))),
        engagement_at_signup=rng.normal(*ENGAGEMENT_AT_SIGNUP, n),
    )


# --- state --------------------------------------------------------------------------------------
@dataclass
class _Latent:
    """What moves week to week without the business deciding it. Any array shape works:
    (customers,) in the history, (paths, customers) in the ground truth."""

    engagement: np.ndarray  # log multiplier of purchase and visit rates
    fading: np.ndarray  # drifting away
    complaints: np.ndarray  # recent-complaints level
    resolve_us: np.ndarray  # resolution time of the current complaint (0: none, NEVER_US)
    opened_us: np.ndarray  # when the current (or last) complaint case was opened
    loyal: np.ndarray

    def take(self, idx: np.ndarray) -> _Latent:
        return _Latent(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx: np.ndarray, part: _Latent) -> None:
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(part, f.name)


@dataclass
class _State:
    latent: _Latent
    alive: np.ndarray  # not churned (latent: the business cannot see it)
    churn_us: np.ndarray  # NEVER_US while alive
    cancelled: np.ndarray  # churned with an explicit cancellation (visible)
    last_purchase_us: np.ndarray
    effect: np.ndarray  # (customers, offers) running log multipliers of the hazard
    effect_until: np.ndarray  # (customers, offers) first week the effect no longer runs
    boost_until: np.ndarray  # first week the discount's purchase lift no longer runs
    last_sent_us: np.ndarray  # (customers, offers), for the contact-frequency cap


def _initial_state(rng: np.random.Generator, people: _People, clock: _Clock) -> _State:
    n, n_offers = len(people), len(OFFER_IDS)
    settled_sd = ENGAGEMENT_NOISE / np.sqrt(1 - ENGAGEMENT_PERSISTENCE**2)
    before = people.signup_us < clock.origin_us
    since_purchase = rng.exponential(1.0 / people.rate) * WEEK_US
    return _State(
        latent=_Latent(
            engagement=np.where(before, rng.normal(0.0, settled_sd, n), 0.0),
            fading=before & (rng.random(n) < FADING_BEFORE_WINDOW),
            complaints=np.zeros(n),
            resolve_us=np.zeros(n, np.int64),
            opened_us=np.zeros(n, np.int64),
            loyal=before & (rng.random(n) < LOYAL_BEFORE_WINDOW),
        ),
        alive=np.ones(n, bool),
        churn_us=np.full(n, NEVER_US, np.int64),
        cancelled=np.zeros(n, bool),
        last_purchase_us=np.where(
            before, clock.origin_us - since_purchase.astype(np.int64), -NEVER_US
        ),
        effect=np.zeros((n, n_offers)),
        effect_until=np.zeros((n, n_offers), np.int64),
        boost_until=np.zeros(n, np.int64),
        last_sent_us=np.full((n, n_offers), -NEVER_US, np.int64),
    )


# --- the dynamics (shared by history and ground truth) -------------------------------------------
def _satisfaction(people: _People, latent: _Latent, open_complaint: np.ndarray) -> np.ndarray:
    return (
        people.satisfaction
        - SATISFACTION_OPEN_COMPLAINT * open_complaint
        - SATISFACTION_RECENT_COMPLAINTS * latent.complaints
    )


def _hazard(people: _People, latent: _Latent, at_us: int, open_complaint: np.ndarray) -> np.ndarray:
    """Weekly churn hazard without offer effects."""
    tenure_weeks = np.maximum(at_us - people.signup_us, 0) / WEEK_US
    engagement = np.minimum(latent.engagement, ENGAGEMENT_SATURATION)
    lapsed = 1.0 / (1.0 + np.exp((latent.engagement - LAPSE_ENGAGEMENT) / LAPSE_WIDTH))
    waited_weeks = np.where(open_complaint, (at_us - latent.opened_us) / WEEK_US, 0.0)
    unresolved = np.clip(waited_weeks / COMPLAINT_PATIENCE_WEEKS, 0.0, 1.0)
    renewal = _renewal_due(people, at_us)
    log_odds = (
        HAZARD_LOGIT
        + people.base_risk
        - HAZARD_ENGAGEMENT[people.segment] * engagement
        + HAZARD_LAPSE * lapsed
        # The open complaint's cost to satisfaction is counted by `unresolved` instead.
        - HAZARD_SATISFACTION * _satisfaction(people, latent, np.zeros_like(open_complaint))
        + HAZARD_UNRESOLVED * unresolved
        + (HAZARD_RENEWAL[people.segment] + RENEWAL_DISENGAGED * np.maximum(-engagement, 0))
        * renewal
        + HAZARD_NEW_CUSTOMER * np.exp(-tenure_weeks / NEW_CUSTOMER_WEEKS)
        + HAZARD_LOYAL * latent.loyal
    )
    return 1.0 / (1.0 + np.exp(-log_odds))


def _renewal_due(people: _People, at_us: int) -> np.ndarray:
    """In the last RENEWAL_WEEKS before a signup anniversary: leaving now means not renewing,
    which the customer does with an explicit cancellation."""
    tenure_weeks = np.maximum(at_us - people.signup_us, 0) / WEEK_US
    to_anniversary = WEEKS_PER_YEAR - tenure_weeks % WEEKS_PER_YEAR
    return (tenure_weeks >= WEEKS_PER_YEAR - RENEWAL_WEEKS) & (to_anniversary <= RENEWAL_WEEKS)


def _purchase_rate(people: _People, latent: _Latent, at_us: int) -> np.ndarray:
    """Expected purchases this week, before any discount lift."""
    return people.rate * np.exp(latent.engagement) * _season(at_us)


def _mean_amount(people: _People) -> np.ndarray:
    return people.basket * np.exp(ITEM_SPREAD**2 / 2)


@dataclass(frozen=True)
class _Happened:
    complaint: np.ndarray
    complaint_us: np.ndarray
    new_complaint: np.ndarray  # opened a new case (no case was open)
    joined: np.ndarray
    joined_us: np.ndarray


def _step_latent(
    rng: np.random.Generator,
    people: _People,
    latent: _Latent,
    week_start_us: int,
    clock: _Clock,
    until_us: np.ndarray | int = NEVER_US,
) -> _Happened:
    """One week of the latent state, in place. Events before signup or at/after `until_us`
    (churn) do not happen."""
    shape = latent.engagement.shape
    open_complaint = latent.resolve_us > week_start_us

    def draw(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whether and when a rare event happens this week (times drawn only where needed)."""
        candidate = rng.random(shape) < p
        at_us = np.zeros(shape, np.int64)
        at_us[candidate] = _times_in_week(rng, week_start_us, int(candidate.sum()), clock)
        happens = candidate & (at_us >= people.signup_us) & (at_us < until_us)
        return happens, at_us

    complaint, complaint_us = draw(people.complaint_rate * (0.4 + 0.6 * np.exp(latent.engagement)))
    # A complaint while a case is open chases it; after the resolution it opens a new case.
    new_complaint = complaint & (complaint_us >= latent.resolve_us)
    delay = _resolution_delay_us(rng, (int(new_complaint.sum()),))
    latent.resolve_us[new_complaint] = complaint_us[new_complaint] + delay
    latent.opened_us[new_complaint] = complaint_us[new_complaint]
    latent.complaints = COMPLAINT_MEMORY * latent.complaints + complaint

    joined, joined_us = draw(LOYALTY_JOIN_PER_WEEK * np.exp(0.5 * latent.engagement))
    joined &= ~latent.loyal
    latent.loyal = latent.loyal | joined

    # Unhappy customers (complaints, low satisfaction) are the ones who start drifting away.
    satisfaction = _satisfaction(people, latent, open_complaint)
    fade = FADE_START * np.exp(0.5 * people.base_risk - FADE_SATISFACTION * satisfaction)
    starts = rng.random(shape) < fade
    stops = rng.random(shape) < FADE_RECOVER
    latent.fading = np.where(latent.fading, ~stops, starts)
    latent.engagement = (
        ENGAGEMENT_PERSISTENCE * latent.engagement
        + ENGAGEMENT_NOISE * rng.standard_normal(shape)
        - FADE_DRIFT * latent.fading
    )
    return _Happened(complaint, complaint_us, new_complaint, joined, joined_us)


def _resolution_delay_us(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    u = rng.random(shape)
    quick = rng.integers(4 * HOUR_US // US, 4 * DAY_US // US, shape) * US
    low, high = SLOW_RESOLUTION_WEEKS
    slow = rng.integers(low * WEEK_US // US, high * WEEK_US // US, shape) * US
    never = NEVER_US // 2  # far beyond any horizon, still safe to add to a timestamp
    return np.where(u < COMPLAINT_QUICK, quick, np.where(u < 1 - COMPLAINT_NEVER, slow, never))


def _true_effects(people: _People, open_complaint: np.ndarray, loyal: np.ndarray) -> np.ndarray:
    """(customers, offers) log multipliers of the weekly hazard an offer sent now would bring."""
    noise = people.effect_noise
    heavy = np.minimum(people.rate / HEAVY_BUYER_RATE, 1.5)
    premium = people.basket > PREMIUM_BASKET
    effects = np.empty_like(noise)
    effects[:, DISCOUNT] = (
        EFFECT_DISCOUNT_PRICE_SENSITIVE * people.price_sensitivity
        + EFFECT_DISCOUNT_PREMIUM * premium
        + noise[:, DISCOUNT]
    )
    # Free shipping, loyalty points and apology calls do nothing at all where they do not apply.
    low, high = ONLINE_LEANING
    leaning = np.clip((people.online - low) / (high - low), 0.0, 1.0)
    effects[:, FREE_SHIPPING] = (leaning > 0) * (
        EFFECT_FREE_SHIPPING * leaning * heavy + noise[:, FREE_SHIPPING]
    )
    effects[:, LOYALTY_POINTS] = loyal * (EFFECT_LOYALTY_POINTS + noise[:, LOYALTY_POINTS])
    effects[:, APOLOGY_CALL] = open_complaint * (EFFECT_APOLOGY_CALL + noise[:, APOLOGY_CALL])
    effects[:, GIFT] = EFFECT_GIFT[people.segment] + noise[:, GIFT]
    return effects


def _redeem_probability(people: _People) -> np.ndarray:
    """(customers, offers): chance an offer is redeemed, if the customer stays to redeem it."""
    n = len(people)
    return np.column_stack(
        [
            0.15 + 0.45 * people.price_sensitivity,
            0.10 + 0.40 * people.online,
            np.full(n, 0.5),
            np.full(n, 0.7),  # the call is taken
            np.full(n, 0.8),
        ]
    )


def _eligibility(
    people: _People, loyal: np.ndarray, last_sent_us: np.ndarray, at_us: np.ndarray
) -> np.ndarray:
    """(customers, offers): the catalog's rules (consent, language, eligibility, cap) at a time."""
    language = _LANGUAGES[people.country]
    base_language = _BASE_LANGUAGES[people.country]
    country = _COUNTRY_CODES[people.country]
    segment = np.array(SEGMENTS)[people.segment]
    tenure = np.asarray(at_us) - people.signup_us
    columns = []
    for o, offer in enumerate(OFFERS_CATALOG):
        rules = offer.get("eligibility", {})
        ok = people.consent | (not offer["marketing"])
        messages = list(offer["messages"])
        ok = ok & (np.isin(language, messages) | np.isin(base_language, messages))
        if "segments" in rules:
            ok = ok & np.isin(segment, rules["segments"])
        if "countries" in rules:
            ok = ok & np.isin(country, rules["countries"])
        if "min_tenure_days" in rules:
            ok = ok & (tenure >= rules["min_tenure_days"] * DAY_US)
        if "loyalty_member" in rules:
            ok = ok & (loyal == rules["loyalty_member"])
        cap = offer.get("max_per_customer_30d")
        if cap is not None:  # the state keeps one send per offer, enough for caps of 0 or 1
            recent = last_sent_us[:, o] > np.asarray(at_us) - 30 * DAY_US
            ok = ok & (~recent if cap >= 1 else np.zeros_like(ok))
        columns.append(ok)
    return np.column_stack(columns)


def _policy_probabilities(
    segment: np.ndarray, open_complaint: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    weights = POLICY_WEIGHTS[segment] * eligible
    weights[:, APOLOGY_CALL] *= np.where(open_complaint, POLICY_APOLOGY_OPEN_COMPLAINT, 1.0)
    total = POLICY_NONE_WEIGHT + weights.sum(axis=1, keepdims=True)
    return np.column_stack([POLICY_NONE_WEIGHT / total, weights / total])


# --- the event log --------------------------------------------------------------------------------
@dataclass
class _Log:
    """Events as column chunks; channel codes index `CHANNELS`, offer codes `ACTIONS` (0 is the
    control `none`), -1 is missing."""

    customer: list[np.ndarray] = field(default_factory=list)
    at_us: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)
    amount: list[np.ndarray] = field(default_factory=list)
    channel: list[np.ndarray] = field(default_factory=list)
    offer: list[np.ndarray] = field(default_factory=list)
    propensity: list[np.ndarray] = field(default_factory=list)
    score: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        kind: str,
        customer: np.ndarray,
        at_us: np.ndarray,
        *,
        amount: np.ndarray | None = None,
        channel: np.ndarray | int = -1,
        offer: np.ndarray | int = -1,
        propensity: np.ndarray | None = None,
        score: np.ndarray | None = None,
    ) -> None:
        n = len(customer)
        if n == 0:
            return
        nan = np.full(n, np.nan)
        self.customer.append(customer.astype(np.int32))
        self.at_us.append(at_us.astype(np.int64))
        self.kind.append(np.full(n, TYPE[kind], np.int8))
        self.amount.append(nan if amount is None else amount)
        self.channel.append(np.broadcast_to(np.asarray(channel), n).astype(np.int8))
        self.offer.append(np.broadcast_to(np.asarray(offer), n).astype(np.int8))
        self.propensity.append(nan if propensity is None else propensity)
        self.score.append(nan if score is None else score)


def _shop_channel(rng: np.random.Generator, people: _People, who: np.ndarray) -> np.ndarray:
    u = rng.random(len(who))
    online = people.online[who]
    web = online * (1 - people.app[who])
    return np.where(u < web, WEB, np.where(u < online, APP, STORE)).astype(np.int8)


def _pick(
    rng: np.random.Generator, choices: tuple[int, ...], p: tuple[float, ...], n: int
) -> np.ndarray:
    return rng.choice(np.array(choices, np.int8), n, p=np.array(p))


# --- the history ----------------------------------------------------------------------------------
def _simulate(
    rng: np.random.Generator,
    people: _People,
    state: _State,
    log: _Log,
    clock: _Clock,
    weeks: range,
    *,
    campaigns: bool = True,
) -> None:
    """Run `weeks` of the world, in place: signups, campaign, churn, the week's events."""
    for week in weeks:
        week_start = clock.week_start(week)
        is_campaign = (
            week >= FIRST_CAMPAIGN_WEEK and (week - FIRST_CAMPAIGN_WEEK) % CAMPAIGN_EVERY_WEEKS == 0
        )
        if campaigns and is_campaign:
            _run_campaign(rng, people, state, log, week, week_start, clock)
        _sign_up(rng, people, state, log, week_start)
        present = np.flatnonzero(state.alive & (people.signup_us < week_start + WEEK_US))
        _churn(rng, people, state, log, week, week_start, present, clock)
        _week_events(rng, people, state, log, week, week_start, present, clock)


def _sign_up(
    rng: np.random.Generator, people: _People, state: _State, log: _Log, week_start: int
) -> None:
    new = np.flatnonzero(
        (people.signup_us >= week_start) & (people.signup_us < week_start + WEEK_US)
    )
    state.latent.engagement[new] = people.engagement_at_signup[new]
    joins = new[rng.random(len(new)) < LOYAL_AT_SIGNUP]
    # They join on the signup day, after this week's campaign (06:00-07:00) has gone out.
    at_us = people.signup_us[joins] + _uniform_us(rng, 7 * HOUR_US, 23 * HOUR_US, len(joins))
    state.latent.loyal[joins] = True
    log.add("loyalty_join", joins, at_us, channel=_shop_channel(rng, people, joins))


def _observed_open_complaint(state: _State, who: np.ndarray, at_us: np.ndarray) -> np.ndarray:
    """A complaint without a `complaint_resolved` event yet (a churned customer's late resolution
    never shows)."""
    resolve = state.latent.resolve_us[who]
    resolved = (resolve <= at_us) & (resolve < state.churn_us[who])
    return (resolve > 0) & ~resolved


def _run_campaign(
    rng: np.random.Generator,
    people: _People,
    state: _State,
    log: _Log,
    week: int,
    week_start: int,
    clock: _Clock,
) -> None:
    send_from = week_start + CAMPAIGN_HOUR * HOUR_US
    recent = send_from - ACTIVE_DAYS * DAY_US
    active_to_business = (
        (people.signup_us < send_from)
        & ~state.cancelled
        & ((state.last_purchase_us >= recent) | (people.signup_us >= recent))
    )
    who = np.flatnonzero(active_to_business & (rng.random(len(people)) < CAMPAIGN_SHARE))
    at_us = _uniform_us(rng, send_from, send_from + HOUR_US, len(who))
    _send(rng, people, state, log, week, who, at_us, clock, action=None)


def _send(
    rng: np.random.Generator,
    people: _People,
    state: _State,
    log: _Log,
    week: int,
    who: np.ndarray,
    at_us: np.ndarray,
    clock: _Clock,
    *,
    action: int | None,
) -> None:
    """Log decisions for `who` (the logging policy's draw, or a forced `action` index into
    ACTIONS with propensity 1) and start their effects and redemptions."""
    eligible = _eligibility(
        people.take(who), state.latent.loyal[who], state.last_sent_us[who], at_us
    )
    open_complaint = _observed_open_complaint(state, who, at_us)
    probs = _policy_probabilities(people.segment[who], open_complaint, eligible)
    if action is None:
        u = rng.random(len(who))[:, None]
        chosen = np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), len(ACTIONS) - 1)
        propensity = probs[np.arange(len(who)), chosen]
    else:
        chosen = np.full(len(who), action)
        propensity = np.ones(len(who))
    offer = chosen - 1  # -1: the control decision `none`
    channel = np.where(offer == APOLOGY_CALL, PHONE, np.where(offer >= 0, EMAIL, -1))
    log.add("offer_sent", who, at_us, channel=channel, offer=chosen, propensity=propensity)

    sent = offer >= 0
    who, at_us, offer = who[sent], at_us[sent], offer[sent]
    state.last_sent_us[who, offer] = at_us
    # Only a customer who is still there feels an offer; a repeat while it runs adds nothing.
    starts = state.alive[who] & (state.effect_until[who, offer] <= week)
    s_who, s_offer = who[starts], offer[starts]
    effects = _true_effects(
        people.take(s_who),
        state.latent.resolve_us[s_who] > at_us[starts],
        state.latent.loyal[s_who],
    )
    state.effect[s_who, s_offer] = effects[np.arange(len(s_who)), s_offer]
    state.effect_until[s_who, s_offer] = week + EFFECT_WEEKS
    discount = s_who[s_offer == DISCOUNT]
    state.boost_until[discount] = week + DISCOUNT_BOOST_WEEKS

    redeem_p = _redeem_probability(people.take(who))[np.arange(len(who)), offer]
    redeems = state.alive[who] & (rng.random(len(who)) < redeem_p)
    r_who, r_offer = who[redeems], offer[redeems]
    # Redeemed in one of the next REDEEM_WEEKS weeks, at the usual times of day (after the send).
    r_week = week + rng.integers(0, REDEEM_WEEKS, len(r_who))
    r_at = _times_in_week(rng, clock.week_start(r_week), len(r_who), clock)
    r_channel = np.where(r_offer == APOLOGY_CALL, PHONE, _shop_channel(rng, people, r_who))
    log.add("offer_redeemed", r_who, r_at, channel=r_channel, offer=r_offer + 1)


def _running_log_multiplier(state: _State, who: np.ndarray, week: int) -> np.ndarray:
    running = state.effect_until[who] > week
    return (state.effect[who] * running).sum(axis=1)


def _churn(
    rng: np.random.Generator,
    people: _People,
    state: _State,
    log: _Log,
    week: int,
    week_start: int,
    present: np.ndarray,
    clock: _Clock,
) -> None:
    part = people.take(present)
    latent = state.latent.take(present)
    open_complaint = latent.resolve_us > week_start
    hazard = _hazard(part, latent, week_start, open_complaint)
    hazard = np.minimum(hazard * np.exp(_running_log_multiplier(state, present, week)), HAZARD_MAX)
    churns = present[rng.random(len(present)) < hazard]
    at_us = _times_in_week(rng, week_start, len(churns), clock)
    at_us = np.maximum(at_us, people.signup_us[churns] + EVENT_DAY_STARTS_H * HOUR_US)
    state.alive[churns] = False
    state.churn_us[churns] = at_us
    cancels = people.cancels[churns] | _renewal_due(people.take(churns), week_start)
    state.cancelled[churns[cancels]] = True
    log.add(
        "cancellation",
        churns[cancels],
        at_us[cancels],
        channel=_pick(rng, (WEB, PHONE, EMAIL), (0.5, 0.3, 0.2), int(cancels.sum())),
    )


def _week_events(
    rng: np.random.Generator,
    people: _People,
    state: _State,
    log: _Log,
    week: int,
    week_start: int,
    present: np.ndarray,
    clock: _Clock,
) -> None:
    """The week's customer events (none before signup or after churn), then the latent step."""
    part = people.take(present)
    latent = state.latent.take(present)
    open_complaint = latent.resolve_us > week_start
    engagement = np.exp(latent.engagement)
    satisfaction = _satisfaction(part, latent, open_complaint)

    def happen(expected: np.ndarray, poisson: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Customers (with repeats) and times of this week's events of one kind."""
        counts = rng.poisson(expected) if poisson else (rng.random(len(expected)) < expected)
        who = np.repeat(present, counts)
        at_us = _times_in_week(rng, week_start, len(who), clock)
        ok = (at_us >= people.signup_us[who]) & (at_us < state.churn_us[who])
        return who[ok], at_us[ok]

    boost = np.where(state.boost_until[present] > week, DISCOUNT_BOOST, 1.0)
    who, at_us = happen(_purchase_rate(part, latent, week_start) * boost)
    amount = np.round(people.basket[who] * rng.lognormal(0.0, ITEM_SPREAD, len(who)), 2)
    amount = np.maximum(amount, 0.5)
    log.add("purchase", who, at_us, amount=amount, channel=_shop_channel(rng, people, who))
    np.maximum.at(state.last_purchase_us, who, at_us)

    open_now = state.latent.resolve_us[who] > week_start
    refund_p = np.where(open_now, REFUND_SHARE_OPEN_COMPLAINT, REFUND_SHARE)
    refunded = rng.random(len(who)) < refund_p
    full = rng.random(int(refunded.sum())) < 0.7
    share = np.where(full, 1.0, rng.uniform(0.2, 0.9, len(full)))
    log.add(
        "refund",
        who[refunded],
        at_us[refunded] + _uniform_us(rng, DAY_US, 20 * DAY_US, len(full)),
        amount=np.round(amount[refunded] * share, 2),
        channel=_shop_channel(rng, people, who[refunded]),
    )

    who, at_us = happen(part.visit_rate * engagement)
    log.add("visit", who, at_us, channel=_shop_channel(rng, people, who))

    who, at_us = happen(part.email_rate * np.sqrt(engagement) * part.consent)
    log.add("email_open", who, at_us, channel=EMAIL)

    support_p = SUPPORT_PER_WEEK + SUPPORT_OPEN_COMPLAINT * open_complaint
    who, at_us = happen(support_p, poisson=False)
    channel = _pick(rng, (PHONE, EMAIL, CHAT), (0.5, 0.3, 0.2), len(who))
    log.add("support_contact", who, at_us, channel=channel)
    answers = rng.random(len(who)) < CSAT_AFTER_SUPPORT
    sat = _satisfaction(
        people.take(who), state.latent.take(who), state.latent.resolve_us[who] > week_start
    )
    csat = np.clip(np.rint(3.6 + 0.7 * sat + rng.normal(0.0, 0.7, len(who))), 1, 5)
    log.add(
        "csat",
        who[answers],
        at_us[answers] + _uniform_us(rng, HOUR_US, 2 * DAY_US, int(answers.sum())),
        channel=channel[answers],
        score=csat[answers],
    )

    nps_p = np.full(len(present), NPS_PER_WEEK)
    position = np.full(len(people), -1)
    position[present] = np.arange(len(present))
    who, at_us = happen(nps_p, poisson=False)
    nps = np.rint(7.0 + 2.0 * satisfaction[position[who]] + rng.normal(0.0, 1.0, len(who)))
    log.add("nps", who, at_us, channel=EMAIL, score=np.clip(nps, 0, 10))

    who, at_us = happen(REFERRAL_PER_WEEK * np.exp(part.satisfaction), poisson=False)
    log.add("referral", who, at_us, channel=_shop_channel(rng, people, who))

    happened = _step_latent(rng, part, latent, week_start, clock, state.churn_us[present])
    state.latent.put(present, latent)
    complained = happened.complaint
    channel = _pick(rng, (PHONE, EMAIL), (0.5, 0.5), int(complained.sum()))
    log.add("complaint", present[complained], happened.complaint_us[complained], channel=channel)
    opened = happened.new_complaint
    log.add(
        "complaint_resolved",  # events after churn or after the end are dropped later
        present[opened],
        latent.resolve_us[opened],
        channel=_pick(rng, (PHONE, EMAIL), (0.6, 0.4), int(opened.sum())),
    )
    joined = happened.joined
    log.add(
        "loyalty_join",
        present[joined],
        happened.joined_us[joined],
        channel=_shop_channel(rng, people, present[joined]),
    )


# --- ground truth -------------------------------------------------------------------------------
def _ground_truth(
    rng: np.random.Generator, people: _People, state: _State, week: int, clock: _Clock
) -> pd.DataFrame:
    """Exact expectations of the dynamics from the start of `week`, per customer and action.

    Latent paths (engagement, complaints, loyalty) are simulated; churn and purchases are
    integrated analytically along each path, for every action on the same paths.
    """
    at_us = clock.week_start(week)
    n, n_offers = len(people), len(OFFER_IDS)
    live = np.flatnonzero(state.alive & (people.signup_us < at_us))
    part = people.take(live)
    latent = state.latent.take(live)
    paths = _Latent(
        **{f.name: np.tile(getattr(latent, f.name), (TRUTH_PATHS, 1)) for f in fields(latent)}
    )

    # Effects: what is still running, and what each action would add (a repeat adds nothing).
    running_weeks = np.maximum(state.effect_until[live] - week, 0)
    running = state.effect[live]
    new_effects = _true_effects(part, latent.resolve_us > at_us, latent.loyal)
    starts = running_weeks == 0
    new_effects = new_effects * starts
    boost_weeks = np.maximum(state.boost_until[live] - week, 0)
    new_boost = starts[:, DISCOUNT]

    label_weights = _week_weights(HORIZON_DAYS, clock)
    revenue_weights = _week_weights(CLV_DAYS, clock)
    action_weeks = max(EFFECT_WEEKS, len(label_weights), REDEEM_WEEKS)
    actions = len(ACTIONS)
    shape = (actions, TRUTH_PATHS, len(live))
    alive = np.ones(shape)  # P(alive at the start of week k)
    purchases = np.zeros(shape)  # expected purchases since at_us, given alive
    retained = np.zeros(shape)
    revenue = np.zeros(shape)
    around = np.zeros(shape)  # P(still there at a random moment of the redemption window)
    later = np.zeros((TRUTH_PATHS, len(live)))  # revenue after the effects, per unit alive
    alive_later = np.ones((TRUTH_PATHS, len(live)))
    amount = _mean_amount(part)
    cancels = part.cancels
    for k in range(len(revenue_weights)):
        week_start = at_us + k * WEEK_US
        open_complaint = paths.resolve_us > week_start
        base_hazard = _hazard(part, paths, week_start, open_complaint)
        rate = _purchase_rate(part, paths, week_start) * np.where(
            boost_weeks > k, DISCOUNT_BOOST, 1.0
        )
        wr = revenue_weights[k]
        if k < action_weeks:
            log_mult = (running * (running_weeks > k)).sum(axis=1)
            action_log_mult = np.zeros((actions, len(live)))
            action_log_mult[1:] = new_effects.T * (k < EFFECT_WEEKS)
            hazard = np.minimum(
                base_hazard[None] * np.exp(log_mult + action_log_mult)[:, None], HAZARD_MAX
            )
            lift = np.ones((actions, len(live)))
            if k < DISCOUNT_BOOST_WEEKS:
                lift[1 + DISCOUNT] = np.where(new_boost & (boost_weeks <= k), DISCOUNT_BOOST, 1.0)
            action_rate = rate[None] * lift[:, None]
            if k < len(label_weights):
                w = label_weights[k]
                expected = action_rate * w
                # Churn at a uniform moment u of the counted part: retained only without a
                # cancellation and with a purchase before u.
                none_before = np.exp(-purchases) * _mean_exp(expected)
                explicit = cancels | _renewal_due(part, week_start)
                retained += alive * hazard * w * ~explicit * (1 - none_before)
                purchases = purchases + expected
                if k == len(label_weights) - 1:
                    retained += alive * (1 - hazard * w) * (1 - np.exp(-purchases))
            revenue += alive * action_rate * amount * wr * (1 - hazard * wr / 2)
            if k < REDEEM_WEEKS:
                around += alive * (1 - hazard / 2) / REDEEM_WEEKS
            alive = alive * (1 - hazard)
        else:
            hazard_later = np.minimum(base_hazard, HAZARD_MAX)
            later += alive_later * rate * amount * wr * (1 - hazard_later * wr / 2)
            alive_later = alive_later * (1 - hazard_later)
        _step_latent(rng, part, paths, week_start, clock)
    revenue += alive * later[None]

    p_retain = retained.mean(axis=1)  # (actions, live)
    clv = revenue.mean(axis=1)
    p_redeem = _redeem_probability(part) * around.mean(axis=1)[1:].T

    table = {
        "p_retain_none": np.zeros((n, n_offers)),
        "p_retain_offer": np.zeros((n, n_offers)),
        "p_redeem": np.zeros((n, n_offers)),
        "clv_365": np.zeros((n, n_offers)),
        "delta_revenue_365": np.zeros((n, n_offers)),
    }
    table["p_retain_none"][live] = p_retain[0][:, None]
    table["p_retain_offer"][live] = p_retain[1:].T
    table["p_redeem"][live] = p_redeem
    table["clv_365"][live] = clv[0][:, None]
    table["delta_revenue_365"][live] = (clv[1:] - clv[0]).T
    cost = np.array([offer["cost"] for offer in OFFERS_CATALOG])
    contact_cost = np.array([offer["contact_cost"] for offer in OFFERS_CATALOG])
    signed_up = people.signup_us < at_us
    active = np.zeros(n, bool)
    active[live] = True
    eligible = _eligibility(people, state.latent.loyal, state.last_sent_us, np.full(n, at_us))

    customer = np.repeat(np.arange(n), n_offers)
    frame = pd.DataFrame(
        {
            "customer_id": _strings(_ids("C", np.arange(1, n + 1), _id_width(n)).take(customer)),
            "offer_id": _labels(np.tile(np.arange(n_offers), n), OFFER_IDS),
            "active": np.repeat(active, n_offers),
            "eligible": eligible.ravel(),
            "p_retain_none": table["p_retain_none"].ravel(),
            "p_retain_offer": table["p_retain_offer"].ravel(),
            "delta_retention": (table["p_retain_offer"] - table["p_retain_none"]).ravel(),
            "p_redeem": table["p_redeem"].ravel(),
            "expected_cost": (table["p_redeem"] * cost + contact_cost).ravel(),
            "clv_365": table["clv_365"].ravel(),
            "delta_revenue_365": table["delta_revenue_365"].ravel(),
        }
    )
    return frame[np.repeat(signed_up, n_offers)].reset_index(drop=True)


def _mean_exp(expected: np.ndarray) -> np.ndarray:
    """E[exp(-x u)] for u uniform in [0, 1]: no purchase before a uniform moment of the week."""
    small = expected < 1e-9
    safe = np.where(small, 1.0, expected)
    return np.where(small, 1.0, -np.expm1(-safe) / safe)


# --- frames -------------------------------------------------------------------------------------
def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Fixed-width ids such as C000042, built straight into an Arrow buffer (fast for 10M)."""
    chars = np.empty((len(numbers), len(prefix) + width), np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), np.uint8)
    rest = numbers.astype(np.int64)
    for position in range(len(prefix) + width - 1, len(prefix) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        chars[:, position] = digit + ord("0")
    offsets = np.arange(len(numbers) + 1, dtype=np.int64) * chars.shape[1]
    return pa.LargeStringArray.from_buffers(
        len(numbers), pa.py_buffer(offsets), pa.py_buffer(chars.ravel())
    )


def _id_width(count: int) -> int:
    return max(6, len(str(count)))


def _strings(values: pa.Array) -> pd.Series:
    return pd.Series(values, dtype="str")


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    """Small-integer codes (-1 for missing) to a string column."""
    indices = pa.array(codes, mask=codes < 0, type=pa.int8())
    dictionary = pa.array(list(names), pa.large_string())
    return _strings(pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.large_string()))


def _customers_frame(people: _People, state: _State) -> pd.DataFrame:
    n = len(people)
    return pd.DataFrame(
        {
            "customer_id": _strings(_ids("C", np.arange(1, n + 1), _id_width(n))),
            "signup_date": pd.Series(people.signup_us.astype("datetime64[us]")),
            "country": _labels(people.country, tuple(c for c, _, _ in COUNTRIES)),
            "language": _labels(people.country, tuple(lang for _, lang, _ in COUNTRIES)),
            "segment": _labels(people.segment, SEGMENTS),
            "loyalty_member": state.latent.loyal.copy(),
            "marketing_consent": people.consent.copy(),
            "age": people.age,
            "acquisition_channel": _labels(people.acquisition, ACQUISITION),
        }
    )


def _events_frame(log: _Log, people: _People, state: _State, clock: _Clock) -> pd.DataFrame:
    customer = np.concatenate(log.customer)
    at_us = np.concatenate(log.at_us)
    kind = np.concatenate(log.kind)
    # Delayed events (refunds, resolutions, redemptions, survey answers) need the customer to be
    # still there; the business's own sends and the cancellation itself are kept.
    kept = (at_us < state.churn_us[customer]) | np.isin(
        kind, [TYPE["offer_sent"], TYPE["cancellation"]]
    )
    kept &= at_us < clock.end_us
    order = np.flatnonzero(kept)[np.argsort(at_us[kept], kind="stable")]
    n_people = len(people)
    customer_ids = _ids("C", np.arange(1, n_people + 1), _id_width(n_people))
    return pd.DataFrame(
        {
            "event_id": _strings(_ids("E", np.arange(1, len(order) + 1), _id_width(len(order)))),
            "customer_id": _strings(customer_ids.take(pa.array(customer[order]))),
            "timestamp": pd.Series(at_us[order].astype("datetime64[us]")),
            "event_type": _labels(kind[order], EVENT_TYPES),
            "amount": np.concatenate(log.amount)[order],
            "channel": _labels(np.concatenate(log.channel)[order], CHANNELS),
            "offer_id": _labels(np.concatenate(log.offer)[order], ACTIONS),
            "propensity": np.concatenate(log.propensity)[order],
            "score": np.concatenate(log.score)[order],
        }
    )

"""A seeded simulated B2B SaaS customer base: contract events and the expansions they lead to."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from operator import itemgetter
from typing import Any

from streams.clock import DAY, HOUR, format_ms

DAY_MS = round(DAY * 1000)
HOUR_MS = round(HOUR * 1000)

SEGMENT_MIX = {"smb": 0.6, "mid_market": 0.3, "enterprise": 0.1}

# Primary archetype shares. Expansion archetypes each make one trigger fire and convert
# with some probability; gate archetypes each fail one readiness gate, and some of them also
# show an expansion behaviour that the gate should hold back.
ARCHETYPE_MIX = {
    "steady": 0.29,
    "seat_growth": 0.06,
    "usage_growth": 0.06,
    "tier_curious": 0.05,
    "invite_surge": 0.05,
    "new_department": 0.05,
    "power_user": 0.05,
    "workflow_heavy": 0.04,
    "workflow_deep": 0.03,
    "feature_explorer": 0.04,
    "renewal_expansion": 0.04,
    "expansion_inquiry": 0.02,
    "qbr_unmet_need": 0.02,
    "stalled_pql": 0.03,
    "churning": 0.05,
    "shelfware": 0.03,
    "shallow_adoption": 0.03,
    "support_strain": 0.03,
    "detractor": 0.03,
}
EXPANSION_ARCHETYPES = (
    "seat_growth",
    "usage_growth",
    "tier_curious",
    "invite_surge",
    "new_department",
    "power_user",
    "workflow_heavy",
    "workflow_deep",
    "feature_explorer",
    "renewal_expansion",
    "expansion_inquiry",
    "qbr_unmet_need",
)
# Behaviours an account can show beside its primary one (they need no special profile).
STACKING_ARCHETYPES = tuple(
    archetype
    for archetype in EXPANSION_ARCHETYPES
    if archetype not in ("renewal_expansion", "expansion_inquiry", "qbr_unmet_need")
)
# Gate archetype -> the expansion behaviours it may also show (then gated), and how often.
GATED_SECOND: dict[str, tuple[float, tuple[str, ...]]] = {
    "churning": (0.35, ("usage_growth", "tier_curious")),
    "shelfware": (0.4, ("seat_growth", "invite_surge", "usage_growth")),
    "shallow_adoption": (0.4, ("tier_curious", "usage_growth", "invite_surge")),
    "support_strain": (0.4, ("seat_growth", "usage_growth", "new_department", "tier_curious")),
    "detractor": (0.4, ("tier_curious", "usage_growth", "invite_surge")),
}
# What a stalled in-app prompt was about: behaviours a small account converts on by itself.
STALLING_ARCHETYPES = ("seat_growth", "usage_growth", "tier_curious", "invite_surge")
ARCHETYPES = tuple(ARCHETYPE_MIX)
GROWING_ARCHETYPES = ("seat_growth", "new_department", "invite_surge")  # headcount rising
SECOND_ARCHETYPE_SHARE = 0.2  # expansion accounts showing a second behaviour (stacked signals)
OUTCOME_KINDS = ("seat_purchase", "tier_upgrade", "capacity_upgrade")

PLANS = ("starter", "team", "business", "enterprise")
PLAN_RANK = {plan: rank for rank, plan in enumerate(PLANS)}
PLAN_USAGE_LIMITS: dict[str, dict[str, int]] = {
    "starter": {"storage_gb": 50},
    "team": {"api_calls": 100_000, "storage_gb": 250},
    "business": {"api_calls": 500_000, "storage_gb": 1_000},
    "enterprise": {"api_calls": 2_000_000, "storage_gb": 5_000},
}
# Feature -> the lowest plan that includes it.
GATED_FEATURES = {
    "workflow_automation": "team",
    "api_access": "team",
    "shared_dashboards": "team",
    "sso": "business",
    "advanced_analytics": "business",
    "custom_roles": "business",
    "audit_log": "business",
    "scim_provisioning": "enterprise",
    "sandbox_environments": "enterprise",
    "data_residency": "enterprise",
    "premium_support": "enterprise",
}
DEPARTMENTS = (
    "engineering",
    "product",
    "sales",
    "marketing",
    "customer_success",
    "support",
    "operations",
    "finance",
    "design",
    "data",
    "people",
    "legal",
)
# What enrichment and CRM tools report of any account, without the account asking.
FIRMOGRAPHIC_KINDS = (
    "champion_promoted",
    "exec_sponsor_added",
    "funding_round",
    "headcount_growth",
)
EXTERNAL_KINDS = (*FIRMOGRAPHIC_KINDS, "expansion_inquiry", "qbr_unmet_need")
# Features every plan includes; a plan's features are these and the gated ones up to it.
BASE_FEATURES = ("projects", "tasks", "comments", "file_sharing", "search")
PLAN_FEATURES = {
    plan: BASE_FEATURES
    + tuple(f for f, needs in GATED_FEATURES.items() if PLAN_RANK[needs] <= PLAN_RANK[plan])
    for plan in PLANS
}
# The shipped rules' numbers the behaviours are shaped around: the adoption gate's distinct
# features in 30 days, and value discovery's lowest share of the plan's features.
ADOPTION_MINIMUM = {"smb": 3, "mid_market": 5, "enterprise": 7}
DISCOVERY_SHARE = 0.75
WORKFLOWS = (
    "lead-routing",
    "invoice-approval",
    "weekly-report",
    "onboarding-checklist",
    "bug-triage",
    "content-review",
    "expense-sync",
    "release-notes",
    "renewal-reminders",
    "ticket-escalation",
    "data-export",
    "contract-review",
    "hiring-pipeline",
    "sprint-planning",
    "nightly-sync",
    "access-review",
)
TICKET_SEVERITIES = (("low", 0.35), ("normal", 0.45), ("high", 0.15), ("urgent", 0.05))
# Days between an account's tickets while its support load is steady. Each divides 30, so
# every 30-day window holds the same number: with random arrivals the last 30 days would
# outnumber the 30 before about 40 % of the time, and the support gate would hold back
# accounts whose load is not rising.
TICKET_CADENCE = {"smb": (15, 30), "mid_market": (6, 10, 15), "enterprise": (5, 6, 10)}
# Share of accounts with an annual contract, whose CRM sends a renewal date.
RENEWAL_SHARE = {"smb": 0.25, "mid_market": 0.8, "enterprise": 0.95}
RENEWAL_MOVED_SHARE = 0.15  # renewals pushed to a later date while they are near
NPS_SHARE = 0.65  # accounts with an NPS survey result
FEATURE_TRACKING_SHARE = 0.8  # accounts whose product analytics send feature_used
TICKETING_SHARE = 0.85  # accounts that file support tickets
HISTORY_TICKET_DAYS = 60  # ticket history sent with each account's snapshot: two gate windows
WORKFLOW_SHARE = 0.55  # accounts whose plan has workflows and that run some


@dataclass(frozen=True)
class _SegmentShape:
    plans: tuple[tuple[str, float], ...]
    seat_limit: tuple[int, int]
    mrr: tuple[float, float]
    departments: tuple[int, int]
    unlimited_seats: float  # share of accounts on seat_limit 0 (unlimited)


SEGMENTS = {
    "smb": _SegmentShape((("starter", 0.6), ("team", 0.4)), (5, 12), (100, 1_500), (1, 2), 0.0),
    "mid_market": _SegmentShape(
        (("team", 0.5), ("business", 0.5)), (10, 25), (1_000, 6_000), (2, 4), 0.0
    ),
    "enterprise": _SegmentShape(
        (("business", 0.4), ("enterprise", 0.6)), (25, 60), (5_000, 40_000), (3, 5), 0.15
    ),
}
# Region -> UTC hour around which its users are busy.
REGIONS = ((15.0, 0.55), (11.0, 0.3), (3.0, 0.15))
WEEKEND_FACTOR = 0.08
ONBOARDING_DAYS = 14  # a new user is more active than usual for this long


@dataclass(frozen=True)
class AccountProfile:
    """An account as it starts the run, and the behaviour it will show (the ground truth)."""

    index: int
    account_id: str
    segment: str
    archetypes: tuple[str, ...]  # primary first
    onsets: dict[str, int]  # archetype -> day index on which its behaviour starts
    plan: str
    seat_limit: int  # 0 = unlimited
    usage_limits: dict[str, int]
    mrr: float
    activated_at: str | None
    activation_day: int | None  # day index on which activated_at is set during the run
    health_score: int | None
    departments: tuple[str, ...]  # empty when the account sends no departments
    seats: int  # users holding a seat on day 0
    engagement: float  # typical weekday probability that a user is active
    peak_hour: float  # UTC hour around which its users work
    renewal_day: int | None = None  # day index of the contract's renewal; None = no renewal date
    renewal_form: str = "date"  # how its CRM writes the date: date, utc or offset
    nps: float | None = None  # the latest survey's score on day 0
    features_used: int = 0  # distinct plan features in regular use; 0 = sends no feature_used
    ticket_cadence: int | None = None  # days between support tickets; None = files none
    dormant_share: float = 0.0  # share of seated users who never use the product


def _uuid4(bits: int) -> str:
    """str(uuid.UUID(int=bits, version=4)), without building the UUID (it is per event)."""
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (4 << 76) | (0x8000 << 48)
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _weighted(rng: random.Random, choices: Iterable[tuple[Any, float]]) -> Any:
    items = list(choices)
    return rng.choices([item for item, _ in items], [weight for _, weight in items])[0]


def _quota(count: int, mix: Mapping[str, float], rng: random.Random) -> list[str]:
    """Split `count` by `mix` with largest remainders, so small runs still get every share."""
    total = sum(mix.values())
    exact = {name: count * share / total for name, share in mix.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(mix, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[: count - sum(counts.values())]:
        counts[name] += 1
    names = [name for name in mix for _ in range(counts[name])]
    rng.shuffle(names)
    return names


def _onset(rng: random.Random, archetype: str, days: int) -> int:
    if archetype in ("steady", "stalled_pql", "shelfware", "shallow_adoption", "detractor"):
        return 0  # what these do holds from the start; a stalled prompt follows its behaviour
    if archetype == "renewal_expansion":
        return 0  # set from the renewal date, which is drawn later
    if archetype == "new_department":
        # Departments must be known for 30 days before a new one counts.
        return rng.randint(35, max(35, days - 21))
    if archetype == "workflow_heavy":
        # Four sustained weeks are needed, so the team is automating early enough to show it.
        return rng.randint(0, max(0, days - 35))
    low, high = {
        "seat_growth": (0.1, 0.45),
        "usage_growth": (0.05, 0.45),
        "tier_curious": (0.1, 0.65),
        "invite_surge": (0.1, 0.75),
        "power_user": (0.05, 0.5),
        "workflow_deep": (0.05, 0.45),
        "feature_explorer": (0.0, 0.35),
        "expansion_inquiry": (0.1, 0.8),
        "qbr_unmet_need": (0.1, 0.8),
        "churning": (0.2, 0.55),
        "support_strain": (0.3, 0.7),
    }[archetype]
    return rng.randint(int(days * low), max(int(days * low), int(days * high)))


def _second_archetype(rng: random.Random, primary: str) -> str | None:
    if primary in EXPANSION_ARCHETYPES:
        if rng.random() < SECOND_ARCHETYPE_SHARE:
            return rng.choice([a for a in STACKING_ARCHETYPES if a != primary])
        return None
    if primary == "stalled_pql":
        return rng.choice(STALLING_ARCHETYPES)
    if primary in GATED_SECOND:
        share, behaviours = GATED_SECOND[primary]
        return rng.choice(behaviours) if rng.random() < share else None
    return None


def _nps(rng: random.Random, primary: str, segment: str) -> float | None:
    if primary == "detractor":
        score = rng.randint(1, 6)
    elif rng.random() >= (0.8 if primary == "churning" else NPS_SHARE):
        return None
    elif primary == "churning":
        score = rng.randint(2, 6) if rng.random() < 0.6 else rng.randint(6, 8)
    elif primary in EXPANSION_ARCHETYPES or primary == "stalled_pql":
        score = _weighted(rng, ((rng.randint(8, 10), 0.85), (7, 0.1), (rng.randint(5, 6), 0.05)))
    else:
        score = _weighted(
            rng, ((rng.randint(9, 10), 0.45), (rng.randint(7, 8), 0.35), (rng.randint(2, 6), 0.2))
        )
    if segment == "smb":
        return float(score)
    # Larger accounts report the mean of their respondents' scores.
    return round(min(10.0, max(0.0, score + rng.uniform(-0.4, 0.4))), 1)


def _features_used(rng: random.Random, primary: str, segment: str, plan: str) -> int:
    """How many of its plan's features an account uses regularly (0: it sends none)."""
    count = len(PLAN_FEATURES[plan])
    below_discovery = math.ceil(DISCOVERY_SHARE * count) - 1
    adoption = min(ADOPTION_MINIMUM[segment], below_discovery)
    if primary == "shallow_adoption":
        return rng.randint(1, max(1, ADOPTION_MINIMUM[segment] - 2))
    if primary != "feature_explorer" and rng.random() >= FEATURE_TRACKING_SHARE:
        return 0
    return rng.randint(adoption, below_discovery)


def _profile(index: int, primary: str, days: int, start_ms: int, seed: int) -> AccountProfile:
    rng = random.Random(f"{seed}:profile:{index}")
    archetypes = [primary]
    second = _second_archetype(rng, primary)
    if second is not None:
        archetypes.append(second)

    if primary == "stalled_pql":
        segment = "smb"  # a small account, so its signals route in_app
    elif primary == "qbr_unmet_need":
        segment = rng.choice(("mid_market", "enterprise"))  # accounts with business reviews
    else:
        segment = _weighted(rng, SEGMENT_MIX.items())
    shape = SEGMENTS[segment]
    plan = _weighted(rng, shape.plans)
    if ("tier_curious" in archetypes or primary == "qbr_unmet_need") and plan == "enterprise":
        plan = "business"  # nothing is gated above the top plan
    if {"workflow_heavy", "workflow_deep"} & set(archetypes) and plan == "starter":
        plan = "team"  # workflows come with the team plan

    low, high = shape.seat_limit
    seat_limit = rng.randint(low, high)
    unlimited = rng.random() < shape.unlimited_seats and "seat_growth" not in archetypes
    if "seat_growth" in archetypes:
        utilisation = rng.uniform(0.55, 0.7)
    elif "invite_surge" in archetypes:
        utilisation = rng.uniform(0.3, 0.5)
    else:
        utilisation = rng.uniform(0.4, 0.7)
    seats = max(2, round(utilisation * seat_limit))
    if {"power_user", "workflow_heavy", "workflow_deep"} & set(archetypes):
        seats = max(seats, 4)
        seat_limit = max(seat_limit, math.ceil(seats / 0.7))
    # Room for the newcomers, so most of these accounts do not also saturate their seats.
    if "invite_surge" in archetypes:
        seat_limit = max(seat_limit, math.ceil((seats + 7) / 0.75))
    elif "new_department" in archetypes:
        seat_limit = max(seat_limit, math.ceil((seats + 4) / 0.75))

    position = (seat_limit - low) / (high - low)
    mrr_low, mrr_high = shape.mrr
    spread = min(1.0, max(0.0, position + rng.gauss(0, 0.2)))
    if primary == "stalled_pql":
        spread = min(spread, 0.4)
    mrr = float(round(mrr_low * (mrr_high / mrr_low) ** spread / 10) * 10)

    scale = rng.choice((1, 2, 4)) if plan == "enterprise" else 1
    usage_limits = {meter: limit * scale for meter, limit in PLAN_USAGE_LIMITS[plan].items()}

    roll = rng.random()
    activation_day: int | None = None
    if primary == "renewal_expansion":
        roll = 0.0  # a customer for about a year
    if roll < 0.78:
        activated_at: str | None = format_ms(
            start_ms - rng.randint(30, 400) * DAY_MS + rng.randint(8 * HOUR_MS, 18 * HOUR_MS)
        )
    elif roll < 0.86:
        activated_at = format_ms(
            start_ms - rng.randint(1, 29) * DAY_MS + rng.randint(8 * HOUR_MS, 18 * HOUR_MS)
        )
    else:
        activated_at = None
        if roll < 0.94 and days > 1:
            activation_day = rng.randint(1, days - 1)

    if primary == "renewal_expansion":
        health: int | None = round(rng.uniform(82, 98))  # renewal plays need a healthy account
    elif rng.random() < 0.12:
        health = None
    elif primary == "churning":
        health = round(rng.uniform(62, 85))
    elif primary in EXPANSION_ARCHETYPES or primary in GATED_SECOND or primary == "stalled_pql":
        health = round(rng.triangular(72, 100, 92))
    elif rng.random() < 0.15:
        health = round(rng.uniform(35, 70))
    else:
        health = round(rng.triangular(70, 100, 88))

    if primary == "steady" and rng.random() < 0.08:
        departments: tuple[str, ...] = ()  # no HR integration: events carry no department
    else:
        count = min(seats, rng.randint(*shape.departments))
        departments = tuple(rng.sample(DEPARTMENTS, count))

    if "power_user" in archetypes:
        engagement = rng.uniform(0.22, 0.35)
    else:
        engagement = rng.uniform(0.4, 0.6)
    peak_hour = _weighted(rng, REGIONS) + rng.uniform(-1.5, 1.5)
    onsets = {archetype: _onset(rng, archetype, days) for archetype in archetypes}

    renewal_day: int | None = None
    if primary == "renewal_expansion":
        # Its 60-day run-up starts in the run, or the run starts inside it.
        renewal_day = rng.randint(min(40, days), days + 30)
        onsets[primary] = max(0, renewal_day - 60)
    elif rng.random() < RENEWAL_SHARE[segment]:
        renewal_day = rng.randint(1, 365)  # annual contracts, renewing all year round
    renewal_form = _weighted(rng, (("date", 0.5), ("utc", 0.35), ("offset", 0.15)))

    cadence: int | None = None
    if primary == "support_strain" or rng.random() < TICKETING_SHARE:
        cadence = rng.choice(TICKET_CADENCE[segment])
    if primary == "shelfware":
        dormant = rng.uniform(0.45, 0.65)
    else:
        dormant = rng.choice((0.0, 0.0, 0.05, 0.1))

    return AccountProfile(
        index=index,
        account_id=f"acct-{index + 1:04d}",
        segment=segment,
        archetypes=tuple(archetypes),
        onsets=onsets,
        plan=plan,
        seat_limit=0 if unlimited else seat_limit,
        usage_limits=usage_limits,
        mrr=mrr,
        activated_at=activated_at,
        activation_day=activation_day,
        health_score=health,
        departments=departments,
        seats=seats,
        engagement=engagement,
        peak_hour=peak_hour,
        renewal_day=renewal_day,
        renewal_form=renewal_form,
        nps=_nps(rng, primary, segment),
        features_used=_features_used(rng, primary, segment, plan),
        ticket_cadence=cadence,
        dormant_share=dormant,
    )


@dataclass
class _User:
    user_id: str
    department: str | None
    weekday_p: float
    seated: bool = True
    assigned_ms: int = 0
    quiet_from: int | None = None  # day index from which the user is no longer active
    workflows: tuple[str, ...] = ()  # the workflows this user runs on the days it is active
    run_p: float = 0.3  # chance that an active day runs each of them


@dataclass
class _Meter:
    name: str
    ratio: float  # steady share of the monthly limit used per month
    weekly: bool
    weekday: int  # day index modulo 7 on which a weekly meter reports
    growth: float = 1.0  # daily growth factor after onset (usage_growth only)
    growth_cap: float = 1.0
    frozen_multiplier: float | None = None  # growth stops after a capacity upgrade
    month: tuple[int, int] = (0, 0)
    month_to_date: float = 0.0


class _Account:
    """One account's behaviour, advanced one simulated day at a time."""

    def __init__(self, profile: AccountProfile, sim: Simulation) -> None:
        self.profile = profile
        self.sim = sim
        self.id = profile.account_id
        self.index = profile.index
        self.rng = random.Random(f"{sim.seed}:account:{profile.index}")
        # The v2 behaviours draw from their own stream, so they leave the others' draws alone.
        self.habits = random.Random(f"{sim.seed}:habits:{profile.index}")
        self._ids = random.Random(f"{sim.seed}:ids:{profile.index}")
        self._out: list[tuple[int, int, int, dict[str, Any]]] = []
        self._seq = 0
        self._next_user = 0
        self.plan = profile.plan
        self.seat_limit = profile.seat_limit
        self.usage_limits = dict(profile.usage_limits)
        self.mrr = profile.mrr
        self.health = profile.health_score
        self.onsets = profile.onsets
        self.agenda: dict[int, list[Callable[[int], None]]] = {}
        self.converted: set[str] = set()  # outcome kinds that happened (each at most once)
        self.decided: set[str] = set()  # behaviours whose conversion has been drawn
        self.users: list[_User] = []
        rng = self.rng
        for number in range(profile.seats):
            # Every department has someone from day 0, so none of them looks new later.
            departments = profile.departments
            first = departments[number] if number < len(departments) else self._department()
            self.users.append(self._new_user(first))
        for user in self.users:
            user.quiet_from = None  # the day-0 seats: exactly the profile's share unused
        dormant = math.ceil(profile.dormant_share * len(self.users))
        for user in self.habits.sample(self.users, dormant):
            user.quiet_from = 0

        gated = self._gated_features()
        self.idle_features = rng.sample(gated, min(len(gated), rng.randint(1, 2)))
        self.curious_features: list[str] = []
        self.curious_users: list[_User] = []
        self.distinct_hit: set[str] = set()
        self.health_weekday = rng.randrange(7)
        self.champion: _User | None = None
        self.seat_target = 0
        self.seat_rate = 0.0

        self.meters: dict[str, _Meter] = {}
        for name in self.usage_limits:
            weekly = name == "storage_gb"
            ratio = rng.uniform(0.2, 0.6) if not weekly else rng.uniform(0.1, 0.5)
            self.meters[name] = _Meter(name, ratio, weekly, rng.randrange(7))
        self.growth_meter: _Meter | None = None

        self.hold_until = 0  # conversions before this day index do not happen (a stalled PQL)
        self.csm_managed = profile.segment != "smb"  # a CSM records outcomes in the CRM
        self.opportunity = False
        self.feature_due: dict[str, int] = {}  # feature -> day index of its next use
        self.explore: list[str] = []  # features an explorer has still to try
        self.explore_target = 0
        self.hot_workflow: str | None = None
        self.hot_users: list[_User] = []
        self.renewal_day = profile.renewal_day
        self.nps = profile.nps
        self.strain: tuple[int, int, float] | None = None  # first day, last day, extra per day
        self.tickets = 0
        self._plan_habits()

        for archetype in profile.archetypes:
            getattr(self, f"_plan_{archetype}")(self.onsets[archetype])
        self._plan_support_load()
        self._plan_external()
        self._plan_renewal()
        self._plan_survey()
        if profile.archetypes[0] in EXPANSION_ARCHETYPES:
            self._plan_crm_outcomes()
        if profile.archetypes == ("steady",):
            self._plan_unexplained_outcome()

    # --- building blocks -------------------------------------------------------------------

    def _new_user(self, department: str | None, weekday_p: float | None = None) -> _User:
        self._next_user += 1
        dormant = False
        if weekday_p is None:
            weekday_p = self.profile.engagement * self.rng.uniform(0.85, 1.15)
            share = self.profile.dormant_share
            dormant = bool(share) and self.habits.random() < share
        return _User(
            user_id=f"usr-{self.index + 1:04d}-{self._next_user:04d}",
            department=department,
            weekday_p=min(0.95, weekday_p),
            quiet_from=0 if dormant else None,  # a seat nobody uses
        )

    def _department(self) -> str | None:
        departments = self.profile.departments
        if not departments:
            return None
        weights = [1.0 / (rank + 1) for rank in range(len(departments))]
        return self.rng.choices(departments, weights)[0]

    def _gated_features(self) -> list[str]:
        rank = PLAN_RANK[self.plan]
        return [f for f, plan in GATED_FEATURES.items() if PLAN_RANK[plan] > rank]

    def _schedule(self, day: int, action: Callable[[int], None]) -> None:
        self.agenda.setdefault(day, []).append(action)

    def _moment(self, day: int, after: int | None = None) -> int:
        base = self.sim.day_ms(day)
        hour = (self.profile.peak_hour + self.rng.gauss(0, 2.5)) % 24
        offset = int(hour * HOUR_MS)
        if after is not None and base + offset <= after:
            offset = after - base + self.rng.randint(1_000, 900_000)
        return base + min(offset, DAY_MS - 1)

    def _emit(
        self, ms: int, type_: str, properties: dict[str, Any], user_id: str | None = None
    ) -> None:
        event: dict[str, Any] = {
            "event_id": _uuid4(self._ids.getrandbits(128)),
            "type": type_,
            "account_id": self.id,
        }
        if user_id is not None:
            event["user_id"] = user_id
        event["timestamp"] = self.sim.timestamp(ms)
        event["properties"] = properties
        self._out.append((ms, self.index, self._seq, event))
        self._seq += 1

    def _department_props(self, user: _User) -> dict[str, Any]:
        return {} if user.department is None else {"department": user.department}

    def _active_users(self, day: int) -> list[_User]:
        return [u for u in self.users if u.seated and (u.quiet_from is None or day < u.quiet_from)]

    def _seats_in_use(self) -> int:
        return sum(1 for u in self.users if u.seated)

    def _utilisation(self, extra: int = 0) -> float:
        if not self.seat_limit:
            return 0.0
        return (self._seats_in_use() + extra) / self.seat_limit

    def _assign(self, day: int, user: _User, after: int | None = None) -> None:
        ms = self._moment(day, after)
        user.seated, user.assigned_ms = True, ms
        if user not in self.users:
            self.users.append(user)
        self._emit(ms, "seat_assigned", self._department_props(user), user.user_id)

    def _remove(self, day: int, user: _User) -> None:
        if not user.seated:
            return
        user.seated = False
        self._emit(self._moment(day), "seat_removed", self._department_props(user), user.user_id)

    def _update(self, day: int, **properties: Any) -> None:
        self._emit(self._moment(day), "account_updated", properties)

    def _outcome(self, day: int, kind: str) -> bool:
        if kind in self.converted or day < self.hold_until:
            return False
        self.converted.add(kind)
        self.sim.outcomes.append(
            {"account_id": self.id, "kind": kind, "date": self.sim.date(day).isoformat()}
        )
        return True

    def _convert(self, day: int, old_mrr: float, **properties: Any) -> None:
        """Send the account_updated of a conversion; a CSM records the won deal just before."""
        ms = self._moment(day)
        if self.csm_managed:
            won = {"stage": "won", "expansion_mrr": round(max(0.0, self.mrr - old_mrr), 2)}
            self._emit(ms, "expansion_outcome", won)
            ms = min(ms + self.rng.randint(60_000, 3_600_000), self.sim.day_ms(day + 1) - 1)
        self._emit(ms, "account_updated", properties)

    # --- conversions (the ground truth) -----------------------------------------------------

    def _seat_purchase(self, day: int) -> None:
        if not self._outcome(day, "seat_purchase"):
            return
        old_mrr = self.mrr
        if not self.seat_limit:  # unlimited plan: a true-up of the contract
            self.mrr = round(self.mrr * self.rng.uniform(1.1, 1.3), 2)
            self._convert(day, old_mrr, mrr=self.mrr)
            return
        old = self.seat_limit
        base = max(old, self._seats_in_use())
        self.seat_limit = max(old + 2, math.ceil(base * self.rng.uniform(1.25, 1.5)))
        self.mrr = round(self.mrr * self.seat_limit / old, 2)
        self._convert(day, old_mrr, seat_limit=self.seat_limit, mrr=self.mrr)

    def _tier_upgrade(self, day: int) -> None:
        if self.plan == PLANS[-1] or not self._outcome(day, "tier_upgrade"):
            return
        wanted = [PLAN_RANK[GATED_FEATURES[f]] for f in self.distinct_hit]
        self.plan = PLANS[max([PLAN_RANK[self.plan] + 1, *wanted])]
        for meter, limit in PLAN_USAGE_LIMITS[self.plan].items():
            if limit > self.usage_limits.get(meter, 0):
                self.usage_limits[meter] = limit
                if meter not in self.meters:
                    self.meters[meter] = _Meter(meter, self.rng.uniform(0.1, 0.3), False, 0)
        old_mrr = self.mrr
        self.mrr = round(self.mrr * self.rng.uniform(1.3, 1.8), 2)
        self._convert(
            day, old_mrr, plan=self.plan, usage_limits=dict(self.usage_limits), mrr=self.mrr
        )
        if self.feature_due:
            # What the team upgraded for, it now uses.
            for feature in sorted(self.distinct_hit):  # a set's order differs between runs
                self.feature_due.setdefault(feature, day + self.habits.randint(1, 5))

    def _capacity_upgrade(self, day: int, meter: str | None = None) -> None:
        if not self._outcome(day, "capacity_upgrade"):
            return
        name = meter or self.rng.choice(sorted(self.usage_limits))
        self.usage_limits[name] = int(self.usage_limits[name] * self.rng.choice((2, 2.5, 3)))
        gauge = self.meters[name]
        if gauge is self.growth_meter:
            gauge.frozen_multiplier = self._growth_multiplier(gauge, day)
        old_mrr = self.mrr
        self.mrr = round(self.mrr * self.rng.uniform(1.15, 1.35), 2)
        self._convert(day, old_mrr, usage_limits=dict(self.usage_limits), mrr=self.mrr)

    # --- archetype plans (set up before day 0) ----------------------------------------------

    def _plan_steady(self, onset: int) -> None:
        pass  # the daily noise in `day` is all a steady account does

    def _plan_seat_growth(self, onset: int) -> None:
        limit = self.seat_limit
        self.seat_target = math.ceil(limit * self.rng.uniform(1.0, 1.15))
        duration = self.rng.randint(15, 35)
        self.seat_rate = max(0.1, (self.seat_target - self._seats_in_use()) / duration)

    def _plan_usage_growth(self, onset: int) -> None:
        names = sorted(self.meters)
        name = "api_calls" if "api_calls" in names and self.rng.random() < 0.8 else names[-1]
        meter = self.meters[name]
        meter.weekly = False
        meter.ratio = self.rng.uniform(0.35, 0.55)
        meter.growth = self.rng.uniform(1.025, 1.05)
        meter.growth_cap = self.rng.uniform(1.2, 1.7) / meter.ratio
        self.growth_meter = meter

    def _plan_tier_curious(self, onset: int) -> None:
        gated = self._gated_features()
        self.curious_features = self.rng.sample(gated, min(len(gated), self.rng.randint(3, 5)))
        offsets = sorted(self.rng.sample(range(13), len(self.curious_features)))
        for feature, offset in zip(self.curious_features, offsets, strict=True):
            self._schedule(onset + offset, partial(self._gate_hit, feature=feature))

    def _plan_invite_surge(self, onset: int) -> None:
        invites = self.rng.randint(5, 12)
        span = self.rng.randint(2, 10)
        for _ in range(invites):
            self._schedule(onset + self.rng.randint(0, span), self._invite)
        if self.rng.random() < 0.35:
            self._schedule(onset + span + self.rng.randint(7, 30), self._seat_purchase)

    def _plan_new_department(self, onset: int) -> None:
        unused = [d for d in DEPARTMENTS if d not in self.profile.departments]
        department = self.rng.choice(unused)
        for _ in range(self.rng.randint(2, 6)):
            user = self._new_user(department, self.rng.uniform(0.45, 0.65))
            self._schedule(onset + self.rng.randint(0, 9), partial(self._assign, user=user))
        if self.rng.random() < 0.45:
            self._schedule(onset + self.rng.randint(10, 35), self._seat_purchase)

    def _plan_power_user(self, onset: int) -> None:
        self.champion = self.rng.choice([u for u in self.users if u.quiet_from is None])
        roll = self.rng.random()
        later = onset + self.rng.randint(20, 50)
        if roll < 0.25:
            self._schedule(later, self._tier_upgrade)
        elif roll < 0.5:
            self._schedule(later, self._seat_purchase)
        if self.rng.random() < 0.3:
            champion = self.champion
            self._schedule(
                onset + self.rng.randint(10, 40),
                partial(
                    self._external,
                    kind="champion_promoted",
                    detail={"user_id": champion.user_id, "title": "Director"},
                ),
            )

    def _plan_churning(self, onset: int) -> None:
        for user in self.users:
            if user.quiet_from == 0:
                continue  # never used its seat
            if self.rng.random() < 0.75:
                user.quiet_from = onset + self.rng.randint(0, 14)
                if self.rng.random() < 0.4:
                    gone = user.quiet_from + self.rng.randint(3, 20)
                    self._schedule(gone, partial(self._remove, user=user))
            else:
                user.weekday_p *= 0.6

    def _plan_workflow_heavy(self, onset: int) -> None:
        self._schedule(onset, self._automate)
        if self.habits.random() < 0.45:
            upgrade = self._tier_upgrade if self.plan != PLANS[-1] else self._seat_purchase
            self._schedule(onset + self.habits.randint(30, 50), upgrade)

    def _plan_workflow_deep(self, onset: int) -> None:
        self._schedule(onset, self._integrate)
        if self.habits.random() < 0.45:
            self._schedule(onset + self.habits.randint(20, 45), self._capacity_upgrade)

    def _plan_feature_explorer(self, onset: int) -> None:
        habits = self.habits
        features = PLAN_FEATURES[self.plan]
        unused = [f for f in features if f not in self.feature_due]
        habits.shuffle(unused)
        full = habits.random() < 0.45
        target = len(features) if full else math.ceil(DISCOVERY_SHARE * len(features))
        self.explore = unused[: max(1, target - len(self.feature_due))]
        self._schedule(onset, self._discover)

    def _plan_renewal_expansion(self, onset: int) -> None:
        assert self.renewal_day is not None
        if self.habits.random() < 0.55:
            # The deal closes in the run-up to the renewal date.
            day = max(onset + 1, self.renewal_day - self.habits.randint(0, 25))
            if self.plan != PLANS[-1] and self.habits.random() < 0.4:
                self._schedule(day, self._tier_upgrade)
            else:
                self._schedule(day, self._seat_purchase)

    def _plan_expansion_inquiry(self, onset: int) -> None:
        habits = self.habits
        team = habits.choice([d for d in DEPARTMENTS if d not in self.profile.departments])
        seats = habits.randint(3, 12)
        source = habits.choice(("support_chat", "email", "account_review"))
        detail = {"team": team, "seats": seats, "source": source}
        self._schedule(onset, partial(self._external, kind="expansion_inquiry", detail=detail))
        if habits.random() < 0.6:
            bought = onset + habits.randint(7, 30)
            self._schedule(bought, self._seat_purchase)
            for _ in range(min(seats, habits.randint(2, 6))):
                user = self._new_user(team, habits.uniform(0.45, 0.65))
                self._schedule(bought + habits.randint(1, 10), partial(self._assign, user=user))

    def _plan_qbr_unmet_need(self, onset: int) -> None:
        habits = self.habits
        need = habits.choice(self._gated_features())
        self.distinct_hit.add(need)  # an upgrade goes to the plan that has it
        when = self.sim.date(onset)
        detail = {"need": need, "source": "qbr", "quarter": f"{when.year}-Q{(when.month + 2) // 3}"}
        self._schedule(onset, partial(self._external, kind="qbr_unmet_need", detail=detail))
        if habits.random() < 0.5:
            self._schedule(onset + habits.randint(20, 60), self._tier_upgrade)

    def _plan_stalled_pql(self, onset: int) -> None:
        """Nobody answers the in-app prompt; after a person reaches out, half convert."""
        behaviour = self.profile.archetypes[1]
        self.hold_until = self.onsets[behaviour] + 60
        if self.habits.random() < 0.5:
            convert = {
                "seat_growth": self._seat_purchase,
                "invite_surge": self._seat_purchase,
                "tier_curious": self._tier_upgrade,
                "usage_growth": self._capacity_upgrade,
            }[behaviour]
            self._schedule(self.hold_until + self.habits.randint(0, 25), convert)

    def _plan_shelfware(self, onset: int) -> None:
        pass  # its dormant seats are in the profile

    def _plan_shallow_adoption(self, onset: int) -> None:
        pass  # its few features are in the profile

    def _plan_detractor(self, onset: int) -> None:
        pass  # its NPS is in the profile

    def _plan_support_strain(self, onset: int) -> None:
        self.strain = (onset, onset + self.habits.randint(20, 35), self.habits.uniform(0.25, 0.5))

    def _plan_habits(self) -> None:
        """What most accounts do besides their archetype: features, workflows, tickets."""
        habits = self.habits
        features = PLAN_FEATURES[self.plan]
        base = [f for f in features if f in BASE_FEATURES]
        extra = [f for f in features if f not in BASE_FEATURES]
        habits.shuffle(base)
        habits.shuffle(extra)
        for feature in (base + extra)[: self.profile.features_used]:
            self.feature_due[feature] = habits.randint(0, 4)
        self.failure_rate = habits.uniform(0.03, 0.15)
        if "workflow_automation" in features and habits.random() < WORKFLOW_SHARE:
            catalog = habits.sample(WORKFLOWS, 6)
            users = [u for u in self.users if u.quiet_from is None]
            for user in habits.sample(users, min(len(users), habits.randint(1, 2))):
                user.workflows = tuple(habits.sample(catalog, habits.randint(1, 3)))
        cadence = self.profile.ticket_cadence
        self.ticket_phase = habits.randrange(cadence) if cadence else -1

    def _plan_support_load(self) -> None:
        """Tickets rise for some churning and some fast-growing accounts."""
        archetypes = self.profile.archetypes
        if self.strain is not None:
            return
        if "churning" in archetypes:
            share, cause = 0.4, "churning"
        else:
            growing = [a for a in GROWING_ARCHETYPES if a in archetypes]
            if not growing:
                return
            share, cause = 0.1, growing[0]
        if self.habits.random() < share:
            first = max(0, self.onsets[cause] + self.habits.randint(-5, 10))
            last = first + self.habits.randint(20, 35)
            self.strain = (first, last, self.habits.uniform(0.2, 0.4))

    def _plan_renewal(self) -> None:
        if self.renewal_day is None:
            return
        habits = self.habits
        renewal = self.renewal_day
        if (
            self.profile.archetypes[0] != "renewal_expansion"
            and habits.random() < RENEWAL_MOVED_SHARE
        ):
            moved = habits.randint(max(1, renewal - 50), max(1, renewal - 5))
            self._schedule(moved, self._move_renewal)
        self._schedule(renewal + habits.randint(0, 2), self._renew)

    def _plan_survey(self) -> None:
        if self.nps is not None:
            self._schedule(self.habits.randint(30, 120), self._survey)

    def _plan_crm_outcomes(self) -> None:
        """A CSM qualifies the expansion, and later closes it lost or judges it not ready."""
        if not self.csm_managed:
            return
        onset = min(self.onsets[a] for a in self.profile.archetypes if a in EXPANSION_ARCHETYPES)
        self._schedule(onset + self.habits.randint(10, 25), self._qualify)
        self._schedule(onset + self.habits.randint(45, 75), self._close)

    def _plan_external(self) -> None:
        archetypes = self.profile.archetypes
        growing = set(GROWING_ARCHETYPES) & set(archetypes)
        if growing and self.rng.random() < 0.3:
            onset = min(self.onsets[a] for a in growing)
            kind = self.rng.choice(("funding_round", "headcount_growth"))
            day = max(0, onset + self.rng.randint(-20, 5))
            self._schedule(day, partial(self._external, kind=kind))
        elif self.rng.random() < 0.08:
            kind = self.rng.choice(FIRMOGRAPHIC_KINDS)
            day = self.rng.randrange(self.sim.days)
            self._schedule(day, partial(self._external, kind=kind))
            if archetypes == ("steady",) and self.rng.random() < 0.15:
                convert = self._tier_upgrade if kind == "champion_promoted" else self._seat_purchase
                self._schedule(day + self.rng.randint(15, 60), convert)

    def _plan_unexplained_outcome(self) -> None:
        """Expansions no behaviour announced: the detector cannot see them coming."""
        roll = self.rng.random()
        day = self.rng.randrange(self.sim.days)
        if roll < 0.02:
            self._schedule(day, self._seat_purchase)
        elif roll < 0.03:
            self._schedule(day, self._tier_upgrade)
        elif roll < 0.04:
            self._schedule(day, self._capacity_upgrade)

    # --- actions ----------------------------------------------------------------------------

    def _external(self, day: int, kind: str, detail: dict[str, Any] | None = None) -> None:
        if detail is None:
            detail = self._external_detail(kind)
        self._emit(self._moment(day), "external_signal", {"kind": kind, "detail": detail})

    def _external_detail(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        if kind == "funding_round":
            return {
                "round": rng.choice(("Seed", "Series A", "Series B", "Series C")),
                "amount_usd": rng.randint(2, 120) * 1_000_000,
                "source": "crunchbase",
            }
        if kind == "headcount_growth":
            return {"growth_pct": rng.randint(10, 45), "period_days": 90, "source": "linkedin"}
        if kind == "champion_promoted":
            return {"title": rng.choice(("Director", "VP", "Head of Operations"))}
        return {"title": rng.choice(("CFO", "COO", "CTO", "CRO"))}

    def _automate(self, day: int) -> None:
        """The team builds on workflows: a few users each run several of them most days."""
        habits = self.habits
        users = sorted(
            (u for u in self._active_users(day)), key=lambda u: (not u.workflows, u.user_id)
        )
        chosen = users[: habits.randint(2, 3)]
        for user in self.users:
            user.workflows = ()
        for user in chosen:
            user.workflows = tuple(habits.sample(WORKFLOWS, habits.randint(5, 7)))
            user.run_p = 0.35
            user.weekday_p = max(user.weekday_p, habits.uniform(0.8, 0.9))
        self.failure_rate = habits.uniform(0.01, 0.05)

    def _integrate(self, day: int) -> None:
        """One workflow becomes part of the team's pipeline and runs many times a day."""
        habits = self.habits
        self.hot_workflow = habits.choice(WORKFLOWS)
        active = self._active_users(day) or self.users
        self.hot_users = habits.sample(active, min(len(active), habits.randint(2, 3)))
        for user in self.hot_users:
            user.workflows = tuple(w for w in user.workflows if w != self.hot_workflow)[:2]
            user.weekday_p = max(user.weekday_p, habits.uniform(0.65, 0.8))

    def _run_workflows(self, day: int, user: _User, ms: int) -> None:
        habits = self.habits
        runs = [w for w in user.workflows if habits.random() < user.run_p]
        if user in self.hot_users and self.hot_workflow is not None:
            runs += [self.hot_workflow] * habits.randint(1, 3)
        end = self.sim.day_ms(day + 1) - 1
        for workflow in runs:
            status = "failed" if habits.random() < self.failure_rate else "completed"
            at = min(end, ms + habits.randint(1_000, 3 * HOUR_MS))
            self._emit(at, "workflow_run", {"workflow": workflow, "status": status}, user.user_id)

    def _discover(self, day: int) -> None:
        if not self.explore:
            return
        self.feature_due[self.explore.pop()] = day
        if self.explore:
            self._schedule(day + self.habits.randint(1, 4), self._discover)
        elif self.habits.random() < 0.5:
            upgrade = self._tier_upgrade if self.plan != PLANS[-1] else self._seat_purchase
            self._schedule(day + self.habits.randint(7, 30), upgrade)

    def _features(self, day: int) -> None:
        due = [f for f, when in self.feature_due.items() if when <= day]
        if not due:
            return
        habits = self.habits
        active = self._active_users(day)
        for feature in due:
            # Used every two weeks at most, so every 30 days see each feature in use.
            self.feature_due[feature] = day + habits.randint(3, 13)
            if active:
                user = habits.choice(active)
                self._emit(self._moment(day), "feature_used", {"feature": feature}, user.user_id)

    def _ticket_history(self) -> None:
        """The steady tickets of the 60 days before the simulation, sent with the snapshot:
        a help desk's history, without which the support gate (the last 30 days against the
        30 before) would hold back every ticketing account for its first days."""
        cadence = self.profile.ticket_cadence
        if not cadence:
            return
        for day in range(-HISTORY_TICKET_DAYS, 0):
            if day % cadence == self.ticket_phase:
                self.tickets += 1
                properties = {"ticket_id": f"T{self.index + 1:04d}-{self.tickets:04d}"}
                self._emit(self.sim.day_ms(day) + 12 * HOUR_MS, "support_ticket", properties)

    def _support(self, day: int) -> None:
        count = 1 if day % (self.profile.ticket_cadence or 1) == self.ticket_phase else 0
        strain = self.strain
        if strain is not None and strain[0] <= day <= strain[1]:
            count += _poisson(self.habits, strain[2])
        if not count:
            return
        habits = self.habits
        active = self._active_users(day)
        for _ in range(count):
            self.tickets += 1
            severity = _weighted(habits, TICKET_SEVERITIES)
            properties = {"ticket_id": f"T{self.index + 1:04d}-{self.tickets:04d}"}
            properties["severity"] = severity
            filer = habits.choice(active) if active and habits.random() < 0.7 else None
            self._emit(
                self._moment(day),
                "support_ticket",
                properties,
                None if filer is None else filer.user_id,
            )

    def _renewal_text(self) -> str:
        assert self.renewal_day is not None
        day = self.sim.date(self.renewal_day).isoformat()
        form = self.profile.renewal_form
        if form == "date":
            return day
        if form == "utc":
            return f"{day}T00:00:00Z"
        return f"{day}T23:59:59-05:00"  # end of the customer's business day

    def _move_renewal(self, day: int) -> None:
        assert self.renewal_day is not None
        if self.renewal_day <= day:
            return
        self.renewal_day += self.habits.randint(14, 45)  # co-termed or still in negotiation
        self._update(day, renewal_date=self._renewal_text())

    def _renew(self, day: int) -> None:
        assert self.renewal_day is not None
        if self.renewal_day > day:  # the date moved since this was planned
            self._schedule(self.renewal_day + self.habits.randint(0, 2), self._renew)
            return
        self.renewal_day += 365
        self._update(day, renewal_date=self._renewal_text())

    def _survey(self, day: int) -> None:
        assert self.nps is not None
        habits = self.habits
        churning = "churning" in self.profile.archetypes and day >= self.onsets["churning"]
        drift = -habits.uniform(1, 3) if churning else habits.uniform(-1, 1)
        score = min(10.0, max(0.0, self.nps + drift))
        self.nps = float(round(score)) if self.profile.segment == "smb" else round(score, 1)
        self._update(day, nps=self.nps)
        self._schedule(day + habits.randint(80, 100), self._survey)

    def _qualify(self, day: int) -> None:
        if self.converted:
            return
        self.opportunity = True
        self._emit(self._moment(day), "expansion_outcome", {"stage": "opportunity"})

    def _close(self, day: int) -> None:
        if self.converted:
            return
        habits = self.habits
        if self.opportunity and habits.random() < 0.6:
            reason = habits.choice(("budget", "timing", "chose_competitor", "no_decision"))
            self._emit(self._moment(day), "expansion_outcome", {"stage": "lost", "reason": reason})
        elif not self.opportunity or habits.random() < 0.3:
            reason = habits.choice(("not_ready", "no_need", "reorganising"))
            properties = {"stage": "rejected", "reason": reason}
            self._emit(self._moment(day), "expansion_outcome", properties)

    def _gate_hit(self, day: int, feature: str, user: _User | None = None) -> None:
        if PLAN_RANK[GATED_FEATURES[feature]] <= PLAN_RANK[self.plan]:
            return  # the account has upgraded past this gate
        if user is None:
            candidates = [u for u in self.curious_users if u in self._active_users(day)]
            if not candidates:
                candidates = self._active_users(day)
            if not candidates:
                return
            user = self.rng.choice(candidates)
        properties: dict[str, Any] = {"feature": feature}
        if self.rng.random() < 0.85:
            properties["required_plan"] = GATED_FEATURES[feature]
        self._emit(self._moment(day), "feature_gate_hit", properties, user.user_id)
        if feature in self.curious_features:
            self.distinct_hit.add(feature)
            if len(self.distinct_hit) == 3 and self.rng.random() < 0.5:
                self._schedule(day + self.rng.randint(5, 25), self._tier_upgrade)

    def _invite(self, day: int) -> None:
        inviters = self._active_users(day)
        if not inviters:
            return
        inviter = self.rng.choice(inviters[: max(3, len(inviters) // 3)])
        invitee = self._new_user(inviter.department if self.rng.random() < 0.7 else None)
        if invitee.department is None:
            invitee.department = self._department()
        address = f"{invitee.user_id}@{self.id}.example.com"
        sent = self._moment(day)
        self._emit(sent, "invite_sent", {"invitee": address}, inviter.user_id)
        if self.rng.random() < 0.65:
            accept = partial(self._accept, user=invitee, address=address, sent=sent)
            self._schedule(day + self.rng.randint(0, 4), accept)

    def _accept(self, day: int, user: _User, address: str, sent: int) -> None:
        ms = self._moment(day, after=sent)
        user_id = user.user_id if self.rng.random() < 0.85 else None
        self._emit(ms, "invite_accepted", {"invitee": address}, user_id)
        self._assign(day, user, after=ms)

    # --- one day ----------------------------------------------------------------------------

    def day(self, day: int) -> list[tuple[int, int, int, dict[str, Any]]]:
        """Return this account's events for day index `day` as (ms, account, seq, event)."""
        self._out = []
        rng = self.rng
        if day == 0:
            self._snapshot()
        if self.profile.activation_day == day:
            ms = self._moment(day)
            self._emit(ms, "account_updated", {"activated_at": format_ms(ms)})
        self._run_agenda(day)

        archetypes = self.profile.archetypes
        onsets = self.onsets
        if "churning" not in archetypes:
            self._turnover(day)
        if "seat_growth" in archetypes and day >= onsets["seat_growth"]:
            self._grow_seats(day)
        if "tier_curious" in archetypes and day >= onsets["tier_curious"]:
            self._curious(day)
        elif self.idle_features and rng.random() < 0.015:
            self._gate_hit(day, rng.choice(self.idle_features))
        if rng.random() < 0.006 and self._utilisation(extra=1) < 0.75:
            self._invite(day)
        self._activity(day)
        self._features(day)
        self._support(day)
        self._usage(day)
        self._health(day)
        self._run_agenda(day)  # what today's behaviour scheduled for later today
        return self._out

    def _run_agenda(self, day: int) -> None:
        while day in self.agenda:
            for action in self.agenda.pop(day):
                action(day)

    def _snapshot(self) -> None:
        profile = self.profile
        self._ticket_history()
        ms = self.sim.day_ms(0) + self.rng.randint(0, 300_000)
        properties: dict[str, Any] = {
            "plan": self.plan,
            "seat_limit": self.seat_limit,
            "usage_limits": dict(self.usage_limits),
            "segment": profile.segment,
            "mrr": self.mrr,
            "activated_at": profile.activated_at,
            "health_score": self.health,
        }
        if self.renewal_day is not None:
            properties["renewal_date"] = self._renewal_text()
        if self.nps is not None:
            properties["nps"] = self.nps
        self._emit(ms, "account_updated", properties)
        for user in self.users:
            ms += self.rng.randint(20, 80)
            user.assigned_ms = ms
            self._emit(ms, "seat_assigned", self._department_props(user), user.user_id)

    def _turnover(self, day: int) -> None:
        rng = self.rng
        seated = [u for u in self.users if u.seated and u is not self.champion]
        if seated and rng.random() < 0.001 * len(seated):
            leaver = rng.choice(seated)
            self._remove(day, leaver)
            replacement = self._new_user(leaver.department)
            self._schedule(day + rng.randint(2, 15), partial(self._assign, user=replacement))
        elif rng.random() < 0.001 * len(seated) and (
            not self.seat_limit or self._utilisation(extra=1) < 0.75
        ):
            self._assign(day, self._new_user(self._department()))

    def _grow_seats(self, day: int) -> None:
        rng = self.rng
        purchased = "seat_purchase" in self.converted
        # After buying seats the team keeps growing, more slowly, into its new limit.
        for _ in range(_poisson(rng, self.seat_rate / 3 if purchased else self.seat_rate)):
            if purchased and self._utilisation(extra=1) >= 0.78:
                break
            if not purchased and self._seats_in_use() >= self.seat_target:
                break
            self._assign(day, self._new_user(self._department()))
        if rng.random() < 0.02:
            spare = [u for u in self.users if u.seated and u is not self.champion]
            if spare:
                self._remove(day, min(spare, key=lambda u: u.weekday_p))
        if not purchased and "seat_growth" not in self.decided and self._utilisation() >= 0.9:
            self.decided.add("seat_growth")
            if rng.random() < 0.6:
                self._schedule(day + rng.randint(3, 21), self._seat_purchase)

    def _curious(self, day: int) -> None:
        rng = self.rng
        onset = self.onsets["tier_curious"]
        if not self.curious_users:
            active = self._active_users(day) or self.users
            self.curious_users = rng.sample(active, min(len(active), rng.randint(2, 4)))
        if day - onset < 30 and rng.random() < 0.5:
            for _ in range(rng.randint(1, 2)):
                self._gate_hit(day, rng.choice(self.curious_features))

    def _activity(self, day: int) -> None:
        rng = self.rng
        weekend = self.sim.weekend(day)
        day_start = self.sim.day_ms(day)
        churning = "churning" in self.profile.archetypes and day >= self.onsets["churning"]
        for user in self._active_users(day):
            if user is self.champion and day >= self.onsets["power_user"]:
                chance = 0.6 if weekend else 0.97
            else:
                chance = user.weekday_p * (WEEKEND_FACTOR if weekend else 1.0)
                if churning:
                    chance *= 0.7
                elif user.assigned_ms > day_start - ONBOARDING_DAYS * DAY_MS:
                    chance = min(0.95, chance * 1.5)  # newcomers explore the product
            if rng.random() < chance:
                after = user.assigned_ms if user.assigned_ms >= day_start else None
                ms = self._moment(day, after)
                self._emit(ms, "user_active", self._department_props(user), user.user_id)
                if user.workflows or user in self.hot_users:
                    self._run_workflows(day, user, ms)

    def _growth_multiplier(self, meter: _Meter, day: int) -> float:
        if meter is not self.growth_meter or day < self.onsets["usage_growth"]:
            return 1.0
        if meter.frozen_multiplier is not None:
            return meter.frozen_multiplier
        return min(meter.growth ** (day - self.onsets["usage_growth"]), meter.growth_cap)

    def _usage(self, day: int) -> None:
        rng = self.rng
        today = self.sim.date(day)
        weekend = today.weekday() >= 5
        churning = "churning" in self.profile.archetypes and day >= self.onsets["churning"]
        for name in sorted(self.meters):
            meter = self.meters[name]
            limit = self.usage_limits[name]
            if (today.year, today.month) != meter.month:
                meter.month, meter.month_to_date = (today.year, today.month), 0.0
            if meter.weekly:
                if day % 7 != meter.weekday:
                    continue
                quantity = limit * meter.ratio * 7 / 30 * rng.lognormvariate(0, 0.1)
            else:
                quantity = (
                    limit
                    * meter.ratio
                    / 30
                    * self._growth_multiplier(meter, day)
                    * (0.7 if weekend else 1.12)
                    * rng.lognormvariate(0, 0.2)
                )
            if churning:
                quantity *= 0.97 ** (day - self.onsets["churning"])
            value: float = round(quantity) if name == "api_calls" else round(quantity, 2)
            meter.month_to_date += value
            ms = self.sim.day_ms(day) + DAY_MS - rng.randint(60_000, 600_000)
            self._emit(ms, "usage_recorded", {"meter": name, "quantity": value})
            if (
                meter is self.growth_meter
                and "usage_growth" not in self.decided
                and meter.month_to_date >= 0.9 * limit
            ):
                self.decided.add("usage_growth")
                if rng.random() < 0.6:
                    self._schedule(
                        day + rng.randint(1, 10), partial(self._capacity_upgrade, meter=name)
                    )

    def _health(self, day: int) -> None:
        if self.health is None or day == 0 or day % 7 != self.health_weekday:
            return
        start = self.profile.health_score or 0
        if "churning" in self.profile.archetypes and day >= self.onsets["churning"]:
            health = self.health - self.rng.uniform(3, 9)
        else:
            health = self.health + 0.2 * (start - self.health) + self.rng.gauss(0, 2)
        self.health = round(min(100.0, max(0.0, health)))
        self._update(day, health_score=self.health)


class Simulation:
    """One seeded run: `events()` yields the events, `outcomes` fills in as they are generated.

    Each account gets a profile (segment, plan, seats, limits, health, activation) and one or
    two behaviour archetypes. Most accounts are `steady` and should stay quiet; every other
    archetype is shaped so one contract trigger fires for it, and it converts (a seat purchase,
    tier upgrade or capacity upgrade) with some probability, which is recorded as ground truth
    in `outcomes`. Accounts never share a random stream, so an account's events depend only on
    the seed and its position, and the same seed always yields the same events.

    `accounts` lists every account's profile, including its archetypes (the ground truth for
    which trigger should fire). `events()` may be called again; it regenerates the identical
    stream and refills `outcomes`.
    """

    def __init__(
        self,
        accounts: int = 300,
        days: int = 90,
        seed: int = 7,
        start: datetime | None = None,
        *,
        mix: Mapping[str, float] | None = None,
        duplicate_fraction: float = 0.005,
    ) -> None:
        if accounts < 0 or days < 0:
            raise ValueError("accounts and days must not be negative")
        mix = dict(ARCHETYPE_MIX if mix is None else mix)
        unknown = set(mix) - set(ARCHETYPES)
        if unknown:
            raise ValueError(f"unknown archetypes in mix: {sorted(unknown)}")
        if any(share < 0 for share in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("archetype shares must be non-negative and not all zero")
        self.seed = seed
        self.days = days
        self.duplicate_fraction = duplicate_fraction
        if start is None:
            today = datetime.now(UTC).date()
            start = datetime.combine(today - timedelta(days=days), datetime.min.time(), UTC)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.start = start.astimezone(UTC)
        self._start_ms = round(self.start.timestamp() * 1000)
        primaries = _quota(accounts, mix, random.Random(f"{seed}:mix"))
        self.accounts = [
            _profile(index, primary, days, self._start_ms, seed)
            for index, primary in enumerate(primaries)
        ]
        self.outcomes: list[dict[str, str]] = []
        self._dates = [(self.start + timedelta(days=day)).date() for day in range(days)]
        self._minute_prefixes: dict[int, str] = {}

    def day_ms(self, day: int) -> int:
        """Epoch milliseconds at which day index `day` begins."""
        return self._start_ms + day * DAY_MS

    def date(self, day: int) -> date:
        """The UTC date of day index `day`."""
        if 0 <= day < len(self._dates):
            return self._dates[day]
        return (self.start + timedelta(days=day)).date()

    def weekend(self, day: int) -> bool:
        """Whether day index `day` is a Saturday or a Sunday."""
        return self._dates[day].weekday() >= 5

    def timestamp(self, ms: int) -> str:
        """format_ms(ms), with each minute's date and time formatted once (it is per event)."""
        minute, millis = divmod(ms, 60_000)
        prefix = self._minute_prefixes.get(minute)
        if prefix is None:
            prefix = self._minute_prefixes[minute] = format_ms(minute * 60_000)[:17]
        return f"{prefix}{millis // 1000:02d}.{millis % 1000:03d}Z"

    def events(
        self, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every event in non-decreasing event time; call `progress(day, days)` daily."""
        self.outcomes.clear()
        accounts = [_Account(profile, self) for profile in self.accounts]
        retries = random.Random(f"{self.seed}:duplicates")
        for day in range(self.days):
            batch: list[tuple[int, int, int, dict[str, Any]]] = []
            for account in accounts:
                batch.extend(account.day(day))
            batch.sort(key=itemgetter(0, 1, 2))
            for _, _, _, event in batch:
                yield event
                if retries.random() < self.duplicate_fraction:
                    yield copy.deepcopy(event)  # a producer retry: same event_id, same payload
            if progress is not None:
                progress(day + 1, self.days)


def simulate(
    accounts: int = 300, days: int = 90, seed: int = 7, start: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the events of a seeded simulated customer base, in event-time order."""
    return Simulation(accounts, days, seed, start).events()


def outcomes(
    accounts: int = 300, days: int = 90, seed: int = 7, start: datetime | None = None
) -> list[dict[str, str]]:
    """Return the expansion outcomes of the run `simulate` with the same arguments yields."""
    simulation = Simulation(accounts, days, seed, start)
    for _ in simulation.events():
        pass
    return simulation.outcomes

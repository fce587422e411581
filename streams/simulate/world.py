"""A seeded simulated B2B SaaS customer base: contract events and the expansions they lead to."""

from __future__ import annotations

import copy
import math
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from streams.clock import DAY, HOUR, format_ms

DAY_MS = round(DAY * 1000)
HOUR_MS = round(HOUR * 1000)

SEGMENT_MIX = {"smb": 0.6, "mid_market": 0.3, "enterprise": 0.1}

# Primary archetype shares. Expansion archetypes each make one trigger fire; `churning`
# exercises the health and churn-risk gates.
ARCHETYPE_MIX = {
    "steady": 0.52,
    "seat_growth": 0.08,
    "usage_growth": 0.08,
    "tier_curious": 0.07,
    "invite_surge": 0.06,
    "new_department": 0.06,
    "power_user": 0.06,
    "churning": 0.07,
}
EXPANSION_ARCHETYPES = (
    "seat_growth",
    "usage_growth",
    "tier_curious",
    "invite_surge",
    "new_department",
    "power_user",
)
ARCHETYPES = tuple(ARCHETYPE_MIX)
SECOND_ARCHETYPE_SHARE = 0.2  # expansion accounts showing a second behaviour (stacked signals)
CHURNING_SECOND_SHARE = 0.35  # churning accounts still showing expansion behaviour (gated)
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
EXTERNAL_KINDS = ("champion_promoted", "exec_sponsor_added", "funding_round", "headcount_growth")


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
    if archetype == "steady":
        return 0
    if archetype == "new_department":
        # Departments must be known for 30 days before a new one counts.
        return rng.randint(35, max(35, days - 21))
    low, high = {
        "seat_growth": (0.1, 0.45),
        "usage_growth": (0.05, 0.45),
        "tier_curious": (0.1, 0.65),
        "invite_surge": (0.1, 0.75),
        "power_user": (0.05, 0.5),
        "churning": (0.2, 0.55),
    }[archetype]
    return rng.randint(int(days * low), max(int(days * low), int(days * high)))


def _profile(index: int, primary: str, days: int, start_ms: int, seed: int) -> AccountProfile:
    rng = random.Random(f"{seed}:profile:{index}")
    archetypes = [primary]
    if primary in EXPANSION_ARCHETYPES and rng.random() < SECOND_ARCHETYPE_SHARE:
        archetypes.append(rng.choice([a for a in EXPANSION_ARCHETYPES if a != primary]))
    elif primary == "churning" and rng.random() < CHURNING_SECOND_SHARE:
        archetypes.append(rng.choice(("usage_growth", "tier_curious")))

    segment = _weighted(rng, SEGMENT_MIX.items())
    shape = SEGMENTS[segment]
    plan = _weighted(rng, shape.plans)
    if "tier_curious" in archetypes and plan == "enterprise":
        plan = "business"  # nothing is gated above the top plan

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
    if "power_user" in archetypes:
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
    mrr = float(round(mrr_low * (mrr_high / mrr_low) ** spread / 10) * 10)

    scale = rng.choice((1, 2, 4)) if plan == "enterprise" else 1
    usage_limits = {meter: limit * scale for meter, limit in PLAN_USAGE_LIMITS[plan].items()}

    roll = rng.random()
    activation_day: int | None = None
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

    if rng.random() < 0.12:
        health: int | None = None
    elif primary == "churning":
        health = round(rng.uniform(62, 85))
    elif primary in EXPANSION_ARCHETYPES:
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

    return AccountProfile(
        index=index,
        account_id=f"acct-{index + 1:04d}",
        segment=segment,
        archetypes=tuple(archetypes),
        onsets={archetype: _onset(rng, archetype, days) for archetype in archetypes},
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
        peak_hour=_weighted(rng, REGIONS) + rng.uniform(-1.5, 1.5),
    )


@dataclass
class _User:
    user_id: str
    department: str | None
    weekday_p: float
    seated: bool = True
    assigned_ms: int = 0
    quiet_from: int | None = None  # day index from which the user is no longer active


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

        for archetype in profile.archetypes:
            getattr(self, f"_plan_{archetype}")(self.onsets[archetype])
        self._plan_external()
        if profile.archetypes == ("steady",):
            self._plan_unexplained_outcome()

    # --- building blocks -------------------------------------------------------------------

    def _new_user(self, department: str | None, weekday_p: float | None = None) -> _User:
        self._next_user += 1
        if weekday_p is None:
            weekday_p = self.profile.engagement * self.rng.uniform(0.85, 1.15)
        return _User(
            user_id=f"usr-{self.index + 1:04d}-{self._next_user:04d}",
            department=department,
            weekday_p=min(0.95, weekday_p),
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
            "event_id": str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            "type": type_,
            "account_id": self.id,
        }
        if user_id is not None:
            event["user_id"] = user_id
        event["timestamp"] = format_ms(ms)
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
        if kind in self.converted:
            return False
        self.converted.add(kind)
        self.sim.outcomes.append(
            {"account_id": self.id, "kind": kind, "date": self.sim.date(day).isoformat()}
        )
        return True

    # --- conversions (the ground truth) -----------------------------------------------------

    def _seat_purchase(self, day: int) -> None:
        if not self._outcome(day, "seat_purchase"):
            return
        if not self.seat_limit:  # unlimited plan: a true-up of the contract
            self.mrr = round(self.mrr * self.rng.uniform(1.1, 1.3), 2)
            self._update(day, mrr=self.mrr)
            return
        old = self.seat_limit
        base = max(old, self._seats_in_use())
        self.seat_limit = max(old + 2, math.ceil(base * self.rng.uniform(1.25, 1.5)))
        self.mrr = round(self.mrr * self.seat_limit / old, 2)
        self._update(day, seat_limit=self.seat_limit, mrr=self.mrr)

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
        self.mrr = round(self.mrr * self.rng.uniform(1.3, 1.8), 2)
        self._update(day, plan=self.plan, usage_limits=dict(self.usage_limits), mrr=self.mrr)

    def _capacity_upgrade(self, day: int, meter: str | None = None) -> None:
        if not self._outcome(day, "capacity_upgrade"):
            return
        name = meter or self.rng.choice(sorted(self.usage_limits))
        self.usage_limits[name] = int(self.usage_limits[name] * self.rng.choice((2, 2.5, 3)))
        gauge = self.meters[name]
        if gauge is self.growth_meter:
            gauge.frozen_multiplier = self._growth_multiplier(gauge, day)
        self.mrr = round(self.mrr * self.rng.uniform(1.15, 1.35), 2)
        self._update(day, usage_limits=dict(self.usage_limits), mrr=self.mrr)

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
        self.champion = self.rng.choice(self.users)
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
            if self.rng.random() < 0.75:
                user.quiet_from = onset + self.rng.randint(0, 14)
                if self.rng.random() < 0.4:
                    gone = user.quiet_from + self.rng.randint(3, 20)
                    self._schedule(gone, partial(self._remove, user=user))
            else:
                user.weekday_p *= 0.6

    def _plan_external(self) -> None:
        archetypes = self.profile.archetypes
        growing = {"seat_growth", "invite_surge", "new_department"} & set(archetypes)
        if growing and self.rng.random() < 0.3:
            onset = min(self.onsets[a] for a in growing)
            kind = self.rng.choice(("funding_round", "headcount_growth"))
            day = max(0, onset + self.rng.randint(-20, 5))
            self._schedule(day, partial(self._external, kind=kind))
        elif self.rng.random() < 0.08:
            kind = self.rng.choice(EXTERNAL_KINDS)
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
        ms = self.sim.day_ms(0) + self.rng.randint(0, 300_000)
        self._emit(
            ms,
            "account_updated",
            {
                "plan": self.plan,
                "seat_limit": self.seat_limit,
                "usage_limits": dict(self.usage_limits),
                "segment": profile.segment,
                "mrr": self.mrr,
                "activated_at": profile.activated_at,
                "health_score": self.health,
            },
        )
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
        weekend = self.sim.date(day).weekday() >= 5
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
                self._emit(
                    self._moment(day, after),
                    "user_active",
                    self._department_props(user),
                    user.user_id,
                )

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

    def day_ms(self, day: int) -> int:
        """Epoch milliseconds at which day index `day` begins."""
        return self._start_ms + day * DAY_MS

    def date(self, day: int) -> date:
        """The UTC date of day index `day`."""
        return (self.start + timedelta(days=day)).date()

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
            batch.sort(key=lambda item: item[:3])
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

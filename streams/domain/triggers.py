"""The triggers, each declared once (rule, check, words); the detector's lists derive from them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import Field

from streams.clock import DAY, day_of, format_time, month_of, month_start
from streams.domain.rule_fields import AscendingLevels, Count, Days, Strict, WindowDays
from streams.domain.state import AccountState
from streams.events import Event, ExternalSignal

if TYPE_CHECKING:
    from streams.rules import SegmentRules

ExpansionType = Literal["seat", "capacity", "tier", "cross_department"]
ExternalKind = Literal[
    "champion_promoted", "exec_sponsor_added", "funding_round", "headcount_growth"
]
# (level, evidence): what a check returns when its trigger's condition holds
Firing = tuple[float, dict[str, Any]]
# a check given its trigger's rule
Check = Callable[[AccountState, Event, Any], Firing | None]


class TriggerRule(Strict):
    """A trigger's part of the rules file (`triggers.<name>`); any trigger can be switched off."""

    enabled: bool = True


R = TypeVar("R", bound=TriggerRule)


@dataclass(frozen=True)
class Trigger(Generic[R]):
    """One trigger, whole. The rules' `triggers` and `priority`, the checks run on an event,
    the names in the signal model and the words for people all derive from these."""

    name: str
    expansion_type: ExpansionType
    # its part of the rules file, with the contract's numbers as defaults
    rule: type[R]
    check: Callable[[AccountState, Event, R], Firing | None]
    # the evidence of one of its signals as a short sentence for people
    why: Callable[[dict[str, Any]], str]
    # its place in the default priority, highest first; spaced so that a new trigger slots
    # in between without renumbering the others
    position: int
    # fires on an external_signal event only, without reading the account's state
    external: bool = False


@dataclass(frozen=True, slots=True)
class Fired:
    trigger: str
    level: float
    evidence: dict[str, Any]


class Catalog:
    """A set of trigger definitions in default priority order; the detector's is CATALOG."""

    def __init__(self, *definitions: Trigger[Any]) -> None:
        ordered = sorted(definitions, key=lambda definition: definition.position)
        for field in ("name", "position"):
            values = [getattr(definition, field) for definition in ordered]
            repeated = sorted({str(value) for value in values if values.count(value) > 1})
            if repeated:
                raise ValueError(f"two triggers have the same {field}: {', '.join(repeated)}")
        self.definitions = tuple(ordered)
        self.names = tuple(definition.name for definition in ordered)
        self._by_name = {definition.name: definition for definition in ordered}

    def __iter__(self) -> Iterator[Trigger[Any]]:
        return iter(self.definitions)

    def __getitem__(self, name: str) -> Trigger[Any]:
        return self._by_name[name]

    def with_triggers(self, *definitions: Trigger[Any]) -> Catalog:
        """These triggers and the given ones (a test's toy trigger, say)."""
        return Catalog(*self.definitions, *definitions)


def evaluate(state: AccountState, event: Event, rules: SegmentRules) -> list[Fired]:
    """Every enabled trigger whose condition holds now, highest priority first."""
    fired = []
    checks = rules.checks if isinstance(event, ExternalSignal) else rules.state_checks
    for trigger, check, rule in checks:
        firing = check(state, event, rule)
        if firing is not None:
            fired.append(Fired(trigger, *firing))
    return fired


MAX_RATIO = 1e12


def _level_reached(levels: list[float], ratio: float) -> float | None:
    reached = [level for level in levels if ratio >= level]
    return reached[-1] if reached else None


# -- usage_ceiling ----------------------------------------------------------------------


class UsageCeilingRule(TriggerRule):
    levels: AscendingLevels = [0.8, 1.0]
    projection_days: Days = 14
    projection_min_days: Annotated[int, Field(ge=1, le=28)] = 7


def usage_ceiling(state: AccountState, event: Event, rule: UsageCeilingRule) -> Firing | None:
    """A meter at >= 80 % of its monthly limit, or projected to reach it within 14 days."""
    if not state.usage or not state.usage_limits:
        return None
    assert state.now is not None
    quiet = state.memo.get("usage_ceiling")
    if quiet is not None and quiet[0] == (rule, state.usage_revision):
        start, days = quiet[1]
        if (state.now - start) / DAY < days:
            return None
    firing, quiet_while = _usage_ceiling(state, rule)
    state.memo["usage_ceiling"] = ((rule, state.usage_revision), quiet_while)
    return firing


def _usage_ceiling(
    state: AccountState, rule: UsageCeilingRule
) -> tuple[Firing | None, tuple[float, float]]:
    """The trigger now, and (start, days): it stays quiet while usage stays the same and
    fewer than `days` days have passed since `start`.

    With the same usage the ratio stays the same, and the projected days to the limit only
    grow while the days left in the month shrink; after the month, that usage no longer
    counts. So once projections count (projection_min_days into the month), a trigger quiet
    now stays quiet until usage changes.
    """
    assert state.now is not None
    month = month_of(state.now)
    days_elapsed = (state.now - month_start(month)) / DAY
    # (projection_min_days is at least 1: from then on there is a run rate)
    quiet_days = rule.projection_min_days if days_elapsed < rule.projection_min_days else math.inf
    quiet_while = (month_start(month), quiet_days)
    # usage resets with the month: a limit reached only after that is no ceiling
    days_left = (month_start(month + 1) - state.now) / DAY
    best: tuple[float, float, str, float | None] | None = None
    for meter, (meter_month, used) in sorted(state.usage.items()):
        limit = state.usage_limits.get(meter)
        if not limit or meter_month != month:
            continue
        # capped: a tiny limit must not make the ratio infinite (JSON has no infinity)
        ratio = min(used / limit, MAX_RATIO)
        level = _level_reached(rule.levels, ratio)
        projected = None
        run_rate = used / days_elapsed if days_elapsed > 0 else 0.0
        if level is None and days_elapsed >= rule.projection_min_days and run_rate > 0:
            days_to_limit = (limit - used) / run_rate
            if days_to_limit <= min(rule.projection_days, days_left):
                level, projected = rule.levels[0], days_to_limit
        if level is not None and (best is None or (level, ratio) > best[:2]):
            best = (level, ratio, meter, projected)
    if best is None:
        return None, quiet_while
    level, ratio, meter, projected = best
    evidence: dict[str, Any] = {
        "meter": meter,
        "usage": round(state.usage[meter][1], 3),
        "limit": state.usage_limits[meter],
        "ratio": round(ratio, 4),
        "month": f"{month // 12:04d}-{month % 12 + 1:02d}",
        "days_elapsed": round(days_elapsed, 2),
        "basis": "usage",
    }
    if projected is not None:
        evidence["basis"] = "projection"
        evidence["projected_days_to_limit"] = round(projected, 2)
    return (level, evidence), (state.now, -math.inf)


def _usage_ceiling_why(e: dict[str, Any]) -> str:
    if e.get("basis") == "projection":
        return (
            f"{e['meter']} projected to reach its monthly limit in "
            f"{e['projected_days_to_limit']:g} days ({e['ratio']:.0%} used)"
        )
    used = f"{e['usage']:,.0f} / {e['limit']:,.0f}"
    return f"{e['meter']} at {e['ratio']:.0%} of its monthly limit ({used})"


USAGE_CEILING = Trigger(
    "usage_ceiling", "capacity", UsageCeilingRule, usage_ceiling, _usage_ceiling_why, 10
)


# -- seat_saturation ----------------------------------------------------------------------


class SeatSaturationRule(TriggerRule):
    levels: AscendingLevels = [0.8, 0.9, 1.0]
    sustain_days: Days = 14


def seat_saturation(state: AccountState, event: Event, rule: SeatSaturationRule) -> Firing | None:
    """Seats in use near the seat limit: the top level at once, the others once sustained."""
    if not state.seat_limit:
        return None  # 0 or unknown: unlimited seats
    assert state.now is not None
    ratio = len(state.seats) / state.seat_limit
    level = _level_reached(rule.levels, ratio)
    if level is None:
        return None
    sustained = 0.0 if state.saturated_since is None else (state.now - state.saturated_since) / DAY
    if level != rule.levels[-1] and sustained < rule.sustain_days:
        return None
    return level, {
        "seats_in_use": len(state.seats),
        "seat_limit": state.seat_limit,
        "ratio": round(ratio, 4),
        "saturated_since": format_time(state.saturated_since or state.now),
        "sustained_days": round(sustained, 2),
    }


def _seat_saturation_why(e: dict[str, Any]) -> str:
    held = f" for {e['sustained_days']:.0f} days" if e["sustained_days"] >= 1 else ""
    return f"{e['seats_in_use']} of {e['seat_limit']} seats in use ({e['ratio']:.0%}){held}"


SEAT_SATURATION = Trigger(
    "seat_saturation", "seat", SeatSaturationRule, seat_saturation, _seat_saturation_why, 20
)


# -- new_department -----------------------------------------------------------------------


class NewDepartmentRule(TriggerRule):
    min_users: Count = 2
    window_days: WindowDays = 14
    departments_known_days: Days = 30


def new_department(state: AccountState, event: Event, rule: NewDepartmentRule) -> Firing | None:
    """Several users active from a department first seen in the window, in a known account."""
    if not state.departments:
        return None
    assert state.now is not None
    today = state.today
    known_since, new = state.memoized(
        "new_departments",
        (rule.window_days, today, state.department_revision),
        lambda: _new_departments(state, today - rule.window_days + 1),
    )
    if not new or state.now - known_since < rule.departments_known_days * DAY:
        return None
    return state.memoized(
        "new_department",
        (rule, today, state.activity_revision),
        lambda: _new_department(state, rule, known_since, new),
    )


def _new_departments(state: AccountState, first: int) -> tuple[float, set[str]]:
    """When the first department was seen, and the departments first seen from day `first`."""
    known_since = min(state.departments.values())
    new = {d for d, first_seen in state.departments.items() if day_of(first_seen) >= first}
    return known_since, new


def _new_department(
    state: AccountState, rule: NewDepartmentRule, known_since: float, new: set[str]
) -> Firing | None:
    best: tuple[int, str] | None = None
    active = state.active_day_counts(rule.window_days)
    for department in new:
        users = sum(1 for user in active if state.users[user][2] == department)
        if users >= rule.min_users and (best is None or (users, department) > best):
            best = (users, department)
    if best is None:
        return None
    users, department = best
    return 1.0, {
        "department": department,
        "active_users": users,
        "first_seen": format_time(state.departments[department]),
        "departments_known_since": format_time(known_since),
        "window_days": rule.window_days,
    }


def _new_department_why(e: dict[str, Any]) -> str:
    return (
        f"new department {e['department']!r}: {e['active_users']} active users "
        f"(first seen {e['first_seen'][:10]})"
    )


NEW_DEPARTMENT = Trigger(
    "new_department",
    "cross_department",
    NewDepartmentRule,
    new_department,
    _new_department_why,
    30,
)


# -- gated_feature_demand -----------------------------------------------------------------


class GatedFeatureDemandRule(TriggerRule):
    distinct_features: Count = 3
    distinct_window_days: WindowDays = 14
    hits: Count = 10
    hits_window_days: WindowDays = 30
    hits_min_users: Count = 2


def gated_feature_demand(
    state: AccountState, event: Event, rule: GatedFeatureDemandRule
) -> Firing | None:
    """Many distinct gated features hit recently, or many gate hits by several users."""
    if not state.gate_hits:
        return None
    return state.memoized(
        "gated_feature_demand",
        (rule, state.today, state.tally_revision),
        lambda: _gated_feature_demand(state, rule),
    )


def _gated_feature_demand(state: AccountState, rule: GatedFeatureDemandRule) -> Firing | None:
    today = state.today
    recent = today - rule.distinct_window_days + 1
    features = sorted(f for f, day in state.gate_features.items() if day >= recent)
    hits = state.window_sum(state.gate_hits, rule.hits_window_days)
    first = today - rule.hits_window_days + 1
    users = sum(1 for day in state.gate_users.values() if day >= first)
    evidence = {
        "distinct_features": len(features),
        "features": features,
        "distinct_window_days": rule.distinct_window_days,
        "gate_hits": hits,
        "gate_users": users,
        "hits_window_days": rule.hits_window_days,
    }
    if len(features) >= rule.distinct_features:
        return 1.0, {**evidence, "basis": "distinct_features"}
    if hits >= rule.hits and users >= rule.hits_min_users:
        return 1.0, {**evidence, "basis": "gate_hits"}
    return None


def _gated_feature_demand_why(e: dict[str, Any]) -> str:
    if e.get("basis") == "distinct_features":
        return (
            f"{e['distinct_features']} gated features hit in {e['distinct_window_days']} days: "
            + ", ".join(e["features"])
        )
    return f"{e['gate_hits']} gate hits by {e['gate_users']} users in {e['hits_window_days']} days"


GATED_FEATURE_DEMAND = Trigger(
    "gated_feature_demand",
    "tier",
    GatedFeatureDemandRule,
    gated_feature_demand,
    _gated_feature_demand_why,
    40,
)


# -- invite_surge -------------------------------------------------------------------------


class InviteSurgeRule(TriggerRule):
    invites: Count = 5
    window_days: WindowDays = 30


def invite_surge(state: AccountState, event: Event, rule: InviteSurgeRule) -> Firing | None:
    """Many invites sent in the window."""
    if not state.invites:
        return None
    invites = state.memoized(
        "invites",
        (rule.window_days, state.today, state.tally_revision),
        lambda: state.window_sum(state.invites, rule.window_days),
    )
    if invites < rule.invites:
        return None
    return 1.0, {"invites": invites, "window_days": rule.window_days}


def _invite_surge_why(e: dict[str, Any]) -> str:
    return f"{e['invites']} invites sent in {e['window_days']} days"


INVITE_SURGE = Trigger("invite_surge", "seat", InviteSurgeRule, invite_surge, _invite_surge_why, 50)


# -- power_user_emergence -----------------------------------------------------------------


class PowerUserEmergenceRule(TriggerRule):
    multiple_of_mean: Annotated[float, Field(gt=1, le=100)] = 2.0
    window_days: WindowDays = 30
    min_active_users: Count = 3
    min_active_days: Count = 10


def power_user_emergence(
    state: AccountState, event: Event, rule: PowerUserEmergenceRule
) -> Firing | None:
    """A user active on at least twice the account's mean active days in the window."""
    if len(state.users) < rule.min_active_users:
        return None
    window = state.activity_window(rule.window_days)
    days = window.counts
    if len(days) < rule.min_active_users:
        return None
    top, user = window.top, window.top_user
    mean = window.total / len(days)
    if top < rule.min_active_days or top < rule.multiple_of_mean * mean:
        return None
    return 1.0, {
        "user_id": user,
        "active_days": top,
        "mean_active_days": round(mean, 2),
        "active_users": len(days),
        "window_days": rule.window_days,
    }


def _power_user_emergence_why(e: dict[str, Any]) -> str:
    return (
        f"user {e['user_id']} active {e['active_days']} of {e['window_days']} days "
        f"(account mean {e['mean_active_days']:g})"
    )


POWER_USER_EMERGENCE = Trigger(
    "power_user_emergence",
    "cross_department",
    PowerUserEmergenceRule,
    power_user_emergence,
    _power_user_emergence_why,
    60,
)


# -- relationship_change and company_growth: external signals -----------------------------


class ExternalRule(TriggerRule):
    kinds: list[ExternalKind]


def external_signal(state: AccountState, event: Event, rule: ExternalRule) -> Firing | None:
    """An external_signal of a kind listed for the trigger."""
    if not isinstance(event, ExternalSignal) or event.properties.kind not in rule.kinds:
        return None
    return 1.0, {"kind": event.properties.kind, "detail": event.properties.detail or {}}


def _external_why(e: dict[str, Any]) -> str:
    return f"external signal: {e.get('kind')}"


class RelationshipChangeRule(ExternalRule):
    kinds: list[ExternalKind] = ["champion_promoted", "exec_sponsor_added"]


class CompanyGrowthRule(ExternalRule):
    kinds: list[ExternalKind] = ["funding_round", "headcount_growth"]


RELATIONSHIP_CHANGE = Trigger(
    "relationship_change",
    "seat",
    RelationshipChangeRule,
    external_signal,
    _external_why,
    70,
    external=True,
)
COMPANY_GROWTH = Trigger(
    "company_growth",
    "seat",
    CompanyGrowthRule,
    external_signal,
    _external_why,
    80,
    external=True,
)

# The contract's eight triggers: the rules file and the detector know these.
CATALOG = Catalog(
    USAGE_CEILING,
    SEAT_SATURATION,
    NEW_DEPARTMENT,
    GATED_FEATURE_DEMAND,
    INVITE_SURGE,
    POWER_USER_EMERGENCE,
    RELATIONSHIP_CHANGE,
    COMPANY_GROWTH,
)

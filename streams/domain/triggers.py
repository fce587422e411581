"""The eight triggers of the contract: account state + rules -> fired triggers with evidence."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.clock import DAY, day_of, format_time, month_of, month_start
from streams.domain.state import AccountState
from streams.events import Event, ExternalSignal
from streams.rules import SegmentRules


@dataclass(frozen=True, slots=True)
class Fired:
    trigger: str
    level: float
    evidence: dict[str, Any]


MAX_RATIO = 1e12


def _level_reached(levels: list[float], ratio: float) -> float | None:
    reached = [level for level in levels if ratio >= level]
    return reached[-1] if reached else None


def usage_ceiling(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
    """A meter at >= 80 % of its monthly limit, or projected to reach it within 14 days."""
    if not state.usage or not state.usage_limits:
        return None
    rule = rules.triggers.usage_ceiling
    assert state.now is not None
    quiet = state.memo.get("usage_ceiling")
    if quiet is not None and quiet[0] == (rule, state.usage_revision):
        start, days = quiet[1]
        if (state.now - start) / DAY < days:
            return None
    fired, quiet_while = _usage_ceiling(state, rule)
    state.memo["usage_ceiling"] = ((rule, state.usage_revision), quiet_while)
    return fired


def _usage_ceiling(state: AccountState, rule: Any) -> tuple[Fired | None, tuple[float, float]]:
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
    return Fired("usage_ceiling", level, evidence), (state.now, -math.inf)


def seat_saturation(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
    """Seats in use near the seat limit: the top level at once, the others once sustained."""
    rule = rules.triggers.seat_saturation
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
    return Fired(
        "seat_saturation",
        level,
        {
            "seats_in_use": len(state.seats),
            "seat_limit": state.seat_limit,
            "ratio": round(ratio, 4),
            "saturated_since": format_time(state.saturated_since or state.now),
            "sustained_days": round(sustained, 2),
        },
    )


def gated_feature_demand(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
    """Many distinct gated features hit recently, or many gate hits by several users."""
    if not state.gate_hits:
        return None
    rule = rules.triggers.gated_feature_demand
    return state.memoized(
        "gated_feature_demand",
        (rule, state.today, state.tally_revision),
        lambda: _gated_feature_demand(state, rule),
    )


def _gated_feature_demand(state: AccountState, rule: Any) -> Fired | None:
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
        return Fired("gated_feature_demand", 1.0, {**evidence, "basis": "distinct_features"})
    if hits >= rule.hits and users >= rule.hits_min_users:
        return Fired("gated_feature_demand", 1.0, {**evidence, "basis": "gate_hits"})
    return None


def invite_surge(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
    """Many invites sent in the window."""
    if not state.invites:
        return None
    rule = rules.triggers.invite_surge
    invites = state.memoized(
        "invites",
        (rule.window_days, state.today, state.tally_revision),
        lambda: state.window_sum(state.invites, rule.window_days),
    )
    if invites < rule.invites:
        return None
    return Fired("invite_surge", 1.0, {"invites": invites, "window_days": rule.window_days})


def new_department(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
    """Several users active from a department first seen in the window, in a known account."""
    rule = rules.triggers.new_department
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
    state: AccountState, rule: Any, known_since: float, new: set[str]
) -> Fired | None:
    best: tuple[int, str] | None = None
    active = state.active_day_counts(rule.window_days)
    for department in new:
        users = sum(1 for user in active if state.users[user][2] == department)
        if users >= rule.min_users and (best is None or (users, department) > best):
            best = (users, department)
    if best is None:
        return None
    users, department = best
    return Fired(
        "new_department",
        1.0,
        {
            "department": department,
            "active_users": users,
            "first_seen": format_time(state.departments[department]),
            "departments_known_since": format_time(known_since),
            "window_days": rule.window_days,
        },
    )


def power_user_emergence(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
    """A user active on at least twice the account's mean active days in the window."""
    rule = rules.triggers.power_user_emergence
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
    return Fired(
        "power_user_emergence",
        1.0,
        {
            "user_id": user,
            "active_days": top,
            "mean_active_days": round(mean, 2),
            "active_users": len(days),
            "window_days": rule.window_days,
        },
    )


def _external(trigger: str) -> Callable[[AccountState, Event, SegmentRules], Fired | None]:
    def check(state: AccountState, event: Event, rules: SegmentRules) -> Fired | None:
        rule = getattr(rules.triggers, trigger)
        if not isinstance(event, ExternalSignal) or event.properties.kind not in rule.kinds:
            return None
        return Fired(
            trigger, 1.0, {"kind": event.properties.kind, "detail": event.properties.detail or {}}
        )

    check.__name__ = trigger
    check.__doc__ = f"An external_signal of a kind listed for {trigger}."
    return check


TRIGGER_CHECKS: dict[str, Callable[[AccountState, Event, SegmentRules], Fired | None]] = {
    "usage_ceiling": usage_ceiling,
    "seat_saturation": seat_saturation,
    "new_department": new_department,
    "gated_feature_demand": gated_feature_demand,
    "invite_surge": invite_surge,
    "power_user_emergence": power_user_emergence,
    "relationship_change": _external("relationship_change"),
    "company_growth": _external("company_growth"),
}


def evaluate(state: AccountState, event: Event, rules: SegmentRules) -> list[Fired]:
    """Every enabled trigger whose condition holds now, highest priority first."""
    fired = []
    external = isinstance(event, ExternalSignal)
    for trigger in rules.enabled if external else rules.enabled_on_state:
        result = TRIGGER_CHECKS[trigger](state, event, rules)
        if result is not None:
            fired.append(result)
    return fired

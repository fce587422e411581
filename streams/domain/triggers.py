"""The triggers, each declared once (rule, check, words); the detector's lists derive from them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, Field, model_validator

from streams.clock import DAY, day_of, format_time, month_of, month_start
from streams.domain.rule_fields import (
    AscendingLevels,
    Count,
    Days,
    Strict,
    WindowDays,
    ascending,
)
from streams.domain.state import CHANGES, HISTORY_DAYS, AccountState
from streams.events import Event, ExternalKind, ExternalSignal, Id

if TYPE_CHECKING:
    from streams.rules import SegmentRules

ExpansionType = Literal["seat", "capacity", "tier", "cross_department", "workflow", "renewal"]
Route = Literal["in_app", "csm", "sales"]
ROUTES: tuple[Route, ...] = ("in_app", "csm", "sales")  # lowest first
# (level, evidence): what a check returns when its trigger's condition holds
Firing = tuple[float, dict[str, Any]]
# a check given its trigger's rule
Check = Callable[[AccountState, Event, Any], Firing | None]


class TriggerRule(Strict):
    """A trigger's part of the rules file (`triggers.<name>`); any trigger can be switched off,
    and any can name the lowest route its signals take."""

    enabled: bool = True
    min_route: Route = "in_app"


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
    # has a place in the priority order (stalled_pql has none: it ranks as what it escalates)
    ranked: bool = True
    # published at most once per this value of the account (renewal_window: the renewal date)
    once_per: Callable[[AccountState], Any] | None = None
    # What its check reads besides the day, named as in the state's CHANGES: it is checked
    # again in the same day only after an event changed one of them. None: it reads more
    # (the clock, the primary signal) and is checked on every event.
    reads: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.reads or ()) - set(CHANGES)
        if unknown:
            raise ValueError(f"{self.name} reads unknown changes: {', '.join(sorted(unknown))}")

    @property
    def reads_mask(self) -> int | None:
        """`reads` as CHANGES bits."""
        if self.reads is None:
            return None
        return sum(CHANGES[name] for name in self.reads)


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
        self.ranked = tuple(definition.name for definition in ordered if definition.ranked)
        self._by_name = {definition.name: definition for definition in ordered}

    def __iter__(self) -> Iterator[Trigger[Any]]:
        return iter(self.definitions)

    def __getitem__(self, name: str) -> Trigger[Any]:
        return self._by_name[name]

    def with_triggers(self, *definitions: Trigger[Any]) -> Catalog:
        """These triggers and the given ones (a test's toy trigger, say)."""
        return Catalog(*self.definitions, *definitions)


@dataclass(slots=True)
class Evaluated:
    """An account's last evaluation: under which rules, on which day, and what the
    triggers that read only the day and the state's CHANGES gave."""

    rules: object
    day: int
    firings: dict[str, Fired | None]


def evaluate(state: AccountState, event: Event, rules: SegmentRules) -> list[Fired]:
    """Every enabled trigger whose condition holds now, unranked ones first, then highest
    priority first. A trigger that reads only the day and some of the state's CHANGES is
    checked again in the same day only when one of them changed since the last evaluation."""
    fired = []
    checks = rules.checks if isinstance(event, ExternalSignal) else rules.state_checks
    last = state.evaluated
    changed = state.changes
    state.changes = 0
    if last is None or last.rules is not rules or last.day != state.today:
        changed = -1  # all bits: nothing to reuse
        last = state.evaluated = Evaluated(rules, state.today, {})
    firings = last.firings
    for trigger, check, rule, once_per, reads in checks:
        if once_per is not None:
            memory = state.triggers.get(trigger)
            if memory is not None and memory.published_for is not None:
                if memory.published_for == once_per(state):
                    firings.pop(trigger, None)  # (a result kept would miss the changes)
                    continue  # published for this already: not checked
        if reads is not None and not reads & changed and trigger in firings:
            result = firings[trigger]
        else:
            firing = check(state, event, rule)
            result = None if firing is None else Fired(trigger, *firing)
            if reads is not None:
                firings[trigger] = result
        if result is not None:
            fired.append(result)
    return fired


MAX_RATIO = 1e12


def _level_reached(levels: list[float], ratio: float) -> float | None:
    """The highest of the (ascending) levels the ratio reaches."""
    reached = None
    for level in levels:
        if ratio < level:
            break
        reached = level
    return reached


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
        _new_departments,
        state,
        today - rule.window_days + 1,
    )
    if not new or state.now - known_since < rule.departments_known_days * DAY:
        return None
    return state.memoized(
        "new_department",
        (rule, today, state.activity_revision),
        _new_department,
        state,
        rule,
        known_since,
        new,
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
    reads=("tally",),
)


# -- invite_surge -------------------------------------------------------------------------


class InviteSurgeRule(TriggerRule):
    invites: Count = 5
    window_days: WindowDays = 30


def invite_surge(state: AccountState, event: Event, rule: InviteSurgeRule) -> Firing | None:
    """Many invites sent in the window."""
    if not state.invites:
        return None
    invites = state.window_sum(state.invites, rule.window_days)
    if invites < rule.invites:
        return None
    return 1.0, {"invites": invites, "window_days": rule.window_days}


def _invite_surge_why(e: dict[str, Any]) -> str:
    return f"{e['invites']} invites sent in {e['window_days']} days"


INVITE_SURGE = Trigger(
    "invite_surge", "seat", InviteSurgeRule, invite_surge, _invite_surge_why, 50, reads=("tally",)
)


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
    reads=("activity",),
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


class ExpansionInquiryRule(ExternalRule):
    kinds: list[ExternalKind] = ["expansion_inquiry"]
    min_route: Route = "csm"


class QbrOutcomeRule(ExternalRule):
    kinds: list[ExternalKind] = ["qbr_unmet_need"]
    min_route: Route = "sales"


def _ask_why(e: dict[str, Any]) -> str:
    detail = e.get("detail") or {}
    said = ", ".join(f"{k}: {v}" for k, v in sorted(detail.items()) if isinstance(v, str))
    words = {"expansion_inquiry": "the customer asked to expand", "qbr_unmet_need": "QBR need"}
    return words.get(e.get("kind", ""), str(e.get("kind"))) + (f" ({said})" if said else "")


EXPANSION_INQUIRY = Trigger(
    "expansion_inquiry",
    "seat",
    ExpansionInquiryRule,
    external_signal,
    _ask_why,
    25,
    external=True,
)
QBR_OUTCOME = Trigger(
    "qbr_outcome", "tier", QbrOutcomeRule, external_signal, _ask_why, 64, external=True
)


# -- workflow_expansion and workflow_depth ------------------------------------------------


class WorkflowExpansionRule(TriggerRule):
    blocks: Annotated[int, Field(ge=1, le=HISTORY_DAYS // 7)] = 4
    block_days: Annotated[int, Field(ge=1, le=14)] = 7
    # more than this many distinct workflows per running user, on average, in every block
    min_mean_workflows: Annotated[float, Field(ge=0, le=10_000)] = 3.0
    # more than this share of the runs in those blocks completed
    min_completion: Annotated[float, Field(ge=0, le=1)] = 0.9

    @model_validator(mode="after")
    def _within_history(self) -> WorkflowExpansionRule:
        if self.blocks * self.block_days > HISTORY_DAYS:
            raise ValueError(f"blocks x block_days must be at most {HISTORY_DAYS} days")
        return self


def workflow_expansion(
    state: AccountState, event: Event, rule: WorkflowExpansionRule
) -> Firing | None:
    """Users running many distinct workflows in every recent block, nearly all completed."""
    # no user can run more distinct workflows than the account ran in its history
    if len(state.workflow_runs) <= rule.min_mean_workflows:
        return None
    days = rule.blocks * rule.block_days
    runs = completed = 0
    for day, (day_runs, day_completed) in state.workflow_days.items():
        if day > state.today - days:
            runs += day_runs
            completed += day_completed
    if not runs or completed / runs <= rule.min_completion:
        return None
    # a run on a day its user already ran its workflow leaves the means as they were
    means = state.memoized(
        "workflow_means",
        (rule, state.today, state.workflow_revision),
        _workflow_means,
        state,
        rule,
    )
    if means is None:
        return None
    return 1.0, {
        "mean_workflows_per_user": means,  # latest block first
        "block_days": rule.block_days,
        "runs": runs,
        "completed": completed,
        "completion": round(completed / runs, 4),
        "window_days": days,
    }


def _workflow_means(state: AccountState, rule: WorkflowExpansionRule) -> list[float] | None:
    """The mean distinct workflows per running user in each block, latest first; None as
    soon as a block's mean is not above min_mean_workflows."""
    today, block_bits = state.today, (1 << rule.block_days) - 1
    means = []
    for block in range(rule.blocks):
        shift = block * rule.block_days
        users = pairs = 0
        for workflows in state.workflow_users.values():
            ran = 0
            for last_day, mask in workflows.values():
                # the days as bits counted back from today (bit j: today - j; a record's
                # last day is never after today), then the block's
                if (mask << (today - last_day)) >> shift & block_bits:
                    ran += 1
            if ran:
                users += 1
                pairs += ran
        if not users or pairs / users <= rule.min_mean_workflows:
            return None
        means.append(round(pairs / users, 2))
    return means


def _workflow_expansion_why(e: dict[str, Any]) -> str:
    blocks = len(e["mean_workflows_per_user"])
    return (
        f"{min(e['mean_workflows_per_user']):g}+ workflows per user in each of {blocks} "
        f"{e['block_days']}-day blocks, {e['completion']:.0%} of {e['runs']} runs completed"
    )


WORKFLOW_EXPANSION = Trigger(
    "workflow_expansion",
    "workflow",
    WorkflowExpansionRule,
    workflow_expansion,
    _workflow_expansion_why,
    44,
    reads=("workflow",),
)


class WorkflowDepthRule(TriggerRule):
    min_runs: Count = 50  # more than this many runs of one workflow in the window
    window_days: WindowDays = 30


def workflow_depth(state: AccountState, event: Event, rule: WorkflowDepthRule) -> Firing | None:
    """One workflow run more than min_runs times in the window."""
    if not state.workflow_runs:
        return None
    first = state.today - rule.window_days + 1
    best: tuple[int, str] | None = None
    for workflow, days in state.workflow_runs.items():
        if sum(days.values()) <= rule.min_runs:
            continue  # not enough runs even in all the days kept
        runs = sum(n for day, n in days.items() if day >= first)
        # the most runs; among equals, the first workflow in name order
        if best is None or runs > best[0] or (runs == best[0] and workflow < best[1]):
            best = (runs, workflow)
    if best is None or best[0] <= rule.min_runs:
        return None
    return 1.0, {"workflow": best[1], "runs": best[0], "window_days": rule.window_days}


def _workflow_depth_why(e: dict[str, Any]) -> str:
    return f"workflow {e['workflow']!r} ran {e['runs']} times in {e['window_days']} days"


WORKFLOW_DEPTH = Trigger(
    "workflow_depth",
    "workflow",
    WorkflowDepthRule,
    workflow_depth,
    _workflow_depth_why,
    46,
    reads=("workflow",),
)


# -- value_discovery ----------------------------------------------------------------------


class PlanFeatures(Strict):
    """A plan's part of the rules file (`plans.<plan>`): the features the plan includes."""

    features: Annotated[list[Id], Field(min_length=1)]

    @cached_property
    def listed(self) -> list[str]:
        """The features, each once, in name order."""
        return sorted(set(self.features))


class ValueDiscoveryRule(TriggerRule):
    levels: Annotated[list[Annotated[float, Field(gt=0, le=1)]], AfterValidator(ascending)] = [
        0.75,
        1.0,
    ]
    window_days: Days = 90
    # the rules' `plans`, given to the check (not written under the trigger)
    plans: dict[str, PlanFeatures] = Field(default={}, exclude=True)


def value_discovery(state: AccountState, event: Event, rule: ValueDiscoveryRule) -> Firing | None:
    """Most of the features of the account's plan used in the window."""
    plan = rule.plans.get(state.plan) if state.plan is not None else None
    if plan is None or not state.features_used:
        return None
    first, last_used = state.today - rule.window_days + 1, state.features_used.get
    listed = plan.listed
    adopted = [feature for feature in listed if last_used(feature, -1) >= first]
    share = len(adopted) / len(listed)
    level = _level_reached(rule.levels, share)
    if level is None:
        return None
    return level, {
        "plan": state.plan,
        "features_used": len(adopted),
        "plan_features": len(listed),
        "share": round(share, 4),
        "unused": [feature for feature in listed if last_used(feature, -1) < first],
        "window_days": rule.window_days,
    }


def _value_discovery_why(e: dict[str, Any]) -> str:
    return (
        f"{e['features_used']} of the {e['plan_features']} features of plan {e['plan']!r} "
        f"used in {e['window_days']} days ({e['share']:.0%})"
    )


VALUE_DISCOVERY = Trigger(
    "value_discovery",
    "tier",
    ValueDiscoveryRule,
    value_discovery,
    _value_discovery_why,
    42,
    reads=("feature", "account"),
)


# -- renewal_window -----------------------------------------------------------------------


class RenewalWindowRule(TriggerRule):
    days_before: Days = 60
    min_health_score: Annotated[float, Field(ge=0, le=100)] = 80


def renewal_window(state: AccountState, event: Event, rule: RenewalWindowRule) -> Firing | None:
    """A healthy account at most days_before its renewal date, and not past it."""
    renewal = state.renewal_date
    if renewal is None or state.health_score is None:
        return None
    assert state.now is not None
    days_left = (renewal - state.now) / DAY
    if not 0 <= days_left <= rule.days_before or state.health_score < rule.min_health_score:
        return None
    return 1.0, {
        "renewal_date": format_time(renewal),
        "days_to_renewal": round(days_left, 2),
        "health_score": state.health_score,
        "min_health_score": rule.min_health_score,
    }


def _renewal_window_why(e: dict[str, Any]) -> str:
    return (
        f"renewal on {e['renewal_date'][:10]} in {e['days_to_renewal']:.0f} days, "
        f"health {e['health_score']:g}"
    )


def _renewal_date(state: AccountState) -> float | None:
    return state.renewal_date


RENEWAL_WINDOW = Trigger(
    "renewal_window",
    "renewal",
    RenewalWindowRule,
    renewal_window,
    _renewal_window_why,
    62,
    once_per=_renewal_date,
)


# -- stalled_pql --------------------------------------------------------------------------

STALLED_PQL = "stalled_pql"


class StalledPqlRule(TriggerRule):
    after_days: Days = 30
    min_route: Route = "csm"


def stalled_pql(state: AccountState, event: Event, rule: StalledPqlRule) -> Firing | None:
    """The in_app primary unanswered after_days after it was detected: a person's turn."""
    primary = state.primary
    if primary is None or primary.stall_decided or primary.signal["route"] != "in_app":
        return None
    assert state.now is not None
    if state.now - primary.detected < rule.after_days * DAY:
        return None
    signal = primary.signal
    if state.answered(signal["signal_id"]):
        return None
    return 1.0, {
        "stalled_signal_id": signal["signal_id"],
        "stalled_trigger": signal["trigger"],
        "stalled_level": signal["level"],
        "stalled_expansion_type": signal["expansion_type"],
        "stalled_detected_at": signal["detected_at"],
        "days_unanswered": round((state.now - primary.detected) / DAY, 2),
    }


def _stalled_pql_why(e: dict[str, Any]) -> str:
    return (
        f"in-app prompt ({e['stalled_trigger']}) unanswered for "
        f"{e['days_unanswered']:.0f} days since {e['stalled_detected_at'][:10]}"
    )


STALLED = Trigger(
    STALLED_PQL,
    "seat",  # (the signal takes the expansion type of the one it escalates)
    StalledPqlRule,
    stalled_pql,
    _stalled_pql_why,
    0,
    ranked=False,
)

# The contract's triggers: the rules file and the detector know these.
CATALOG = Catalog(
    STALLED,
    USAGE_CEILING,
    SEAT_SATURATION,
    EXPANSION_INQUIRY,
    NEW_DEPARTMENT,
    GATED_FEATURE_DEMAND,
    VALUE_DISCOVERY,
    WORKFLOW_EXPANSION,
    WORKFLOW_DEPTH,
    INVITE_SURGE,
    POWER_USER_EMERGENCE,
    RENEWAL_WINDOW,
    QBR_OUTCOME,
    RELATIONSHIP_CHANGE,
    COMPANY_GROWTH,
)

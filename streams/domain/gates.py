"""The gates, each declared once (numbers, check, reason), checked in order before publishing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import Field

from streams.clock import DAY, format_time
from streams.domain.rule_fields import Count, Strict, WindowDays
from streams.domain.state import HISTORY_DAYS, AccountState

if TYPE_CHECKING:
    from streams.rules import SegmentRules

R = TypeVar("R", bound=Strict)
# What the scorecard shows of a gate: `unknown` where it passes for lack of data.
GateStatus = Literal["met", "unmet", "unknown"]
# What a gate's check gives: the numbers that made the account fail it, or that it passes
# ("met"), or that it passes for lack of the data the gate reads ("unknown").
Checked = dict[str, Any] | Literal["met", "unknown"]


@dataclass(frozen=True)
class Gate(Generic[R]):
    """One gate, whole. The rules' `gates` and the decision reasons derive from these."""

    name: str
    # the decision's reason when an account fails it
    reason: str
    # its numbers, with the contract's defaults; in the rules file they stand under `gates`
    # beside the other gates' numbers
    rule: type[R]
    # the numbers that made the account fail, for the decision's detail; "met" if it passes,
    # "unknown" if it passes for lack of the data the gate reads
    check: Callable[[AccountState, R], Checked]

    def status(self, state: AccountState, rule: R) -> GateStatus:
        checked = self.check(state, rule)
        return "unmet" if isinstance(checked, dict) else checked


class ActivationRule(Strict):
    activation_days: Annotated[int, Field(ge=0, le=3650)] = 30


def not_activated(state: AccountState, rule: ActivationRule) -> Checked:
    """Not activated, or activated less than activation_days ago (every account is known)."""
    activated = state.activated_at
    assert state.now is not None
    if activated is None or state.now - activated < rule.activation_days * DAY:
        return {
            "activated_at": None if activated is None else format_time(activated),
            "activation_days": rule.activation_days,
        }
    return "met"


class HealthRule(Strict):
    min_health_score: Annotated[float, Field(ge=0, le=100)] = 75


def unhealthy(state: AccountState, rule: HealthRule) -> Checked:
    """A health score below min_health_score."""
    health = state.health_score
    if health is None:
        return "unknown"
    if health < rule.min_health_score:
        return {"health_score": health, "min_health_score": rule.min_health_score}
    return "met"


class ChurnRiskRule(Strict):
    churn_window_days: Annotated[int, Field(ge=1, le=30)] = 14
    churn_ratio: Annotated[float, Field(ge=0, le=1)] = 0.7


def active_before(state: AccountState, rule: ChurnRiskRule) -> int:
    """Active users in the churn window before the last one."""
    window, today = rule.churn_window_days, state.today
    return state.memoized(
        "churn_before",
        (window, today, state.history_revision),
        state.active_users,
        today - 2 * window + 1,
        today - window,
    )


def churn_risk(state: AccountState, rule: ChurnRiskRule) -> Checked:
    """Fewer active users in the last window than churn_ratio of those in the window before
    (unknown with nobody active in the window before)."""
    before = active_before(state, rule)
    if not before:
        return "unknown"
    window = rule.churn_window_days
    recent = len(state.active_day_counts(window))
    if recent < rule.churn_ratio * before:
        return {
            "active_users_recent": recent,
            "active_users_before": before,
            "window_days": window,
            "churn_ratio": rule.churn_ratio,
        }
    return "met"


class UtilizationRule(Strict):
    utilization_window_days: WindowDays = 30
    min_utilization: Annotated[float, Field(ge=0, le=10)] = 0.6


def low_utilization(state: AccountState, rule: UtilizationRule) -> Checked:
    """Few of the seats in use active: active users in the window / seats in use."""
    seats = len(state.seats)
    if not seats:
        return "unknown"
    active = len(state.active_day_counts(rule.utilization_window_days))
    if active / seats < rule.min_utilization:
        return {
            "active_users": active,
            "seats_in_use": seats,
            "utilization": round(active / seats, 4),
            "min_utilization": rule.min_utilization,
            "window_days": rule.utilization_window_days,
        }
    return "met"


class AdoptionRule(Strict):
    adoption_window_days: WindowDays = 30
    min_features_used: Count = 3


def low_adoption(state: AccountState, rule: AdoptionRule) -> Checked:
    """Few distinct features used in the window (unknown without a feature_used ever)."""
    if not state.features_ever:
        return "unknown"
    used = state.features_in(rule.adoption_window_days)
    if used < rule.min_features_used:
        return {
            "features_used": used,
            "min_features_used": rule.min_features_used,
            "window_days": rule.adoption_window_days,
        }
    return "met"


class SupportRule(Strict):
    support_window_days: Annotated[int, Field(ge=1, le=HISTORY_DAYS // 2)] = 30


def support_rising(state: AccountState, rule: SupportRule) -> Checked:
    """More support tickets in the last window than in the window before it (unknown
    without a support_ticket ever)."""
    if not state.tickets_ever:
        return "unknown"
    window = rule.support_window_days
    recent = before = 0
    for day, tickets in state.tickets.items():
        if day > state.today - window:
            recent += tickets
        elif day > state.today - 2 * window:
            before += tickets
    if recent > before:
        return {"tickets_recent": recent, "tickets_before": before, "window_days": window}
    return "met"


class NpsRule(Strict):
    min_nps: Annotated[float, Field(ge=0, le=10)] = 7


def low_nps(state: AccountState, rule: NpsRule) -> Checked:
    """An NPS below min_nps."""
    nps = state.nps
    if nps is None:
        return "unknown"
    if nps < rule.min_nps:
        return {"nps": nps, "min_nps": rule.min_nps}
    return "met"


# The contract's gates, in the order they are checked (contract section 6). An account
# without the data a gate reads passes it: health or NPS not known, no seats in use, no
# feature_used or support_ticket ever, nobody active in the churn gate's earlier window.
GATES: tuple[Gate[Any], ...] = (
    Gate("activation", "gated_not_activated", ActivationRule, not_activated),
    Gate("health", "gated_health", HealthRule, unhealthy),
    Gate("churn_risk", "gated_churn_risk", ChurnRiskRule, churn_risk),
    Gate("utilization", "gated_low_utilization", UtilizationRule, low_utilization),
    Gate("adoption", "gated_low_adoption", AdoptionRule, low_adoption),
    Gate("support", "gated_support_rising", SupportRule, support_rising),
    Gate("nps", "gated_nps", NpsRule, low_nps),
)
REASONS = tuple(gate.reason for gate in GATES)


def failed_gate(state: AccountState, rules: SegmentRules) -> tuple[str, dict[str, Any]] | None:
    """The first gate the account fails now, with its reason and numbers."""
    for gate, rule in rules.gate_checks:
        checked = gate.check(state, rule)
        if isinstance(checked, dict):
            return gate.reason, checked
    return None

"""The gates, each declared once (numbers, check, reason), checked in order before publishing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import Field

from streams.clock import DAY, format_time
from streams.domain.rule_fields import Count, Strict, WindowDays
from streams.domain.state import HISTORY_DAYS, AccountState

if TYPE_CHECKING:
    from streams.rules import SegmentRules

R = TypeVar("R", bound=Strict)


@dataclass(frozen=True)
class Gate(Generic[R]):
    """One gate, whole. The rules' `gates` and the decision reasons derive from these."""

    name: str
    # the decision's reason when an account fails it
    reason: str
    # its numbers, with the contract's defaults; in the rules file they stand under `gates`
    # beside the other gates' numbers
    rule: type[R]
    # the numbers that made the account fail, for the decision's detail; None if it passes
    check: Callable[[AccountState, R], dict[str, Any] | None]


class ActivationRule(Strict):
    activation_days: Annotated[int, Field(ge=0, le=3650)] = 30


def not_activated(state: AccountState, rule: ActivationRule) -> dict[str, Any] | None:
    """Not activated, or activated less than activation_days ago."""
    activated = state.activated_at
    assert state.now is not None
    if activated is None or state.now - activated < rule.activation_days * DAY:
        return {
            "activated_at": None if activated is None else format_time(activated),
            "activation_days": rule.activation_days,
        }
    return None


class HealthRule(Strict):
    min_health_score: Annotated[float, Field(ge=0, le=100)] = 75


def unhealthy(state: AccountState, rule: HealthRule) -> dict[str, Any] | None:
    """A known health score below min_health_score."""
    if state.health_score is not None and state.health_score < rule.min_health_score:
        return {"health_score": state.health_score, "min_health_score": rule.min_health_score}
    return None


class ChurnRiskRule(Strict):
    churn_window_days: Annotated[int, Field(ge=1, le=30)] = 14
    churn_ratio: Annotated[float, Field(ge=0, le=1)] = 0.7


def churn_risk(state: AccountState, rule: ChurnRiskRule) -> dict[str, Any] | None:
    """Fewer active users in the last window than churn_ratio of those in the window before."""
    window = rule.churn_window_days
    today = state.today
    recent = len(state.active_day_counts(window))
    before = state.memoized(
        "churn_before",
        (window, today, state.history_revision),
        lambda: state.active_users(today - 2 * window + 1, today - window),
    )
    if before and recent < rule.churn_ratio * before:
        return {
            "active_users_recent": recent,
            "active_users_before": before,
            "window_days": window,
            "churn_ratio": rule.churn_ratio,
        }
    return None


class UtilizationRule(Strict):
    utilization_window_days: WindowDays = 30
    min_utilization: Annotated[float, Field(ge=0, le=10)] = 0.6


def low_utilization(state: AccountState, rule: UtilizationRule) -> dict[str, Any] | None:
    """Seats in use, but few of them active: active users in the window / seats in use."""
    seats = len(state.seats)
    if not seats:
        return None  # unknown passes
    active = len(state.active_day_counts(rule.utilization_window_days))
    if active / seats < rule.min_utilization:
        return {
            "active_users": active,
            "seats_in_use": seats,
            "utilization": round(active / seats, 4),
            "min_utilization": rule.min_utilization,
            "window_days": rule.utilization_window_days,
        }
    return None


class AdoptionRule(Strict):
    adoption_window_days: WindowDays = 30
    min_features_used: Count = 3


def low_adoption(state: AccountState, rule: AdoptionRule) -> dict[str, Any] | None:
    """Few distinct features used in the window, for an account that reports feature use."""
    if not state.features_ever:
        return None  # unknown passes
    used = len(state.features_in(rule.adoption_window_days))
    if used < rule.min_features_used:
        return {
            "features_used": used,
            "min_features_used": rule.min_features_used,
            "window_days": rule.adoption_window_days,
        }
    return None


class SupportRule(Strict):
    support_window_days: Annotated[int, Field(ge=1, le=HISTORY_DAYS // 2)] = 30


def support_rising(state: AccountState, rule: SupportRule) -> dict[str, Any] | None:
    """More support tickets in the last window than in the window before it."""
    if not state.tickets:
        return None
    window = rule.support_window_days
    recent = state.window_sum(state.tickets, window)
    before = state.window_sum(state.tickets, window, before=window)
    if recent > before:
        return {"tickets_recent": recent, "tickets_before": before, "window_days": window}
    return None


class NpsRule(Strict):
    min_nps: Annotated[float, Field(ge=0, le=10)] = 7


def low_nps(state: AccountState, rule: NpsRule) -> dict[str, Any] | None:
    """A known NPS below min_nps."""
    if state.nps is not None and state.nps < rule.min_nps:
        return {"nps": state.nps, "min_nps": rule.min_nps}
    return None


# The contract's gates, in the order they are checked (contract section 6).
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
        detail = gate.check(state, rule)
        if detail is not None:
            return gate.reason, detail
    return None

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


@dataclass(frozen=True)
class Gate(Generic[R]):
    """One gate, whole. The rules' `gates` and the decision reasons derive from these."""

    name: str
    # the decision's reason when an account fails it
    reason: str
    # its numbers, with the contract's defaults; in the rules file they stand under `gates`
    # beside the other gates' numbers
    rule: type[R]
    # whether the account has the data the gate reads: an account without it passes
    known: Callable[[AccountState, R], bool]
    # the numbers that made a known account fail, for the decision's detail; None if it passes
    check: Callable[[AccountState, R], dict[str, Any] | None]

    def status(self, state: AccountState, rule: R) -> GateStatus:
        if not self.known(state, rule):
            return "unknown"
        return "met" if self.check(state, rule) is None else "unmet"


def always(state: AccountState, rule: Strict) -> bool:
    """A gate whose data every account has."""
    return True


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


def health_known(state: AccountState, rule: HealthRule) -> bool:
    return state.health_score is not None


def unhealthy(state: AccountState, rule: HealthRule) -> dict[str, Any] | None:
    """A health score below min_health_score."""
    health = state.health_score
    assert health is not None
    if health < rule.min_health_score:
        return {"health_score": health, "min_health_score": rule.min_health_score}
    return None


class ChurnRiskRule(Strict):
    churn_window_days: Annotated[int, Field(ge=1, le=30)] = 14
    churn_ratio: Annotated[float, Field(ge=0, le=1)] = 0.7


def active_before(state: AccountState, rule: ChurnRiskRule) -> int:
    """Active users in the churn window before the last one."""
    window, today = rule.churn_window_days, state.today
    return state.memoized(
        "churn_before",
        (window, today, state.history_revision),
        lambda: state.active_users(today - 2 * window + 1, today - window),
    )


def churn_known(state: AccountState, rule: ChurnRiskRule) -> bool:
    return active_before(state, rule) > 0


def churn_risk(state: AccountState, rule: ChurnRiskRule) -> dict[str, Any] | None:
    """Fewer active users in the last window than churn_ratio of those in the window before."""
    window = rule.churn_window_days
    recent = len(state.active_day_counts(window))
    before = active_before(state, rule)
    if recent < rule.churn_ratio * before:
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


def seats_known(state: AccountState, rule: UtilizationRule) -> bool:
    return bool(state.seats)


def low_utilization(state: AccountState, rule: UtilizationRule) -> dict[str, Any] | None:
    """Few of the seats in use active: active users in the window / seats in use."""
    seats = len(state.seats)
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


def features_known(state: AccountState, rule: AdoptionRule) -> bool:
    return state.features_ever


def low_adoption(state: AccountState, rule: AdoptionRule) -> dict[str, Any] | None:
    """Few distinct features used in the window."""
    used = state.features_in(rule.adoption_window_days)
    if used < rule.min_features_used:
        return {
            "features_used": used,
            "min_features_used": rule.min_features_used,
            "window_days": rule.adoption_window_days,
        }
    return None


class SupportRule(Strict):
    support_window_days: Annotated[int, Field(ge=1, le=HISTORY_DAYS // 2)] = 30


def tickets_known(state: AccountState, rule: SupportRule) -> bool:
    return state.tickets_ever


def support_rising(state: AccountState, rule: SupportRule) -> dict[str, Any] | None:
    """More support tickets in the last window than in the window before it."""
    window = rule.support_window_days
    recent = before = 0
    for day, tickets in state.tickets.items():
        if day > state.today - window:
            recent += tickets
        elif day > state.today - 2 * window:
            before += tickets
    if recent > before:
        return {"tickets_recent": recent, "tickets_before": before, "window_days": window}
    return None


class NpsRule(Strict):
    min_nps: Annotated[float, Field(ge=0, le=10)] = 7


def nps_known(state: AccountState, rule: NpsRule) -> bool:
    return state.nps is not None


def low_nps(state: AccountState, rule: NpsRule) -> dict[str, Any] | None:
    """An NPS below min_nps."""
    nps = state.nps
    assert nps is not None
    if nps < rule.min_nps:
        return {"nps": nps, "min_nps": rule.min_nps}
    return None


# The contract's gates, in the order they are checked (contract section 6). An account
# without the data a gate reads passes it: health or NPS not known, no seats in use, no
# feature_used or support_ticket ever, nobody active in the churn gate's earlier window.
GATES: tuple[Gate[Any], ...] = (
    Gate("activation", "gated_not_activated", ActivationRule, always, not_activated),
    Gate("health", "gated_health", HealthRule, health_known, unhealthy),
    Gate("churn_risk", "gated_churn_risk", ChurnRiskRule, churn_known, churn_risk),
    Gate("utilization", "gated_low_utilization", UtilizationRule, seats_known, low_utilization),
    Gate("adoption", "gated_low_adoption", AdoptionRule, features_known, low_adoption),
    Gate("support", "gated_support_rising", SupportRule, tickets_known, support_rising),
    Gate("nps", "gated_nps", NpsRule, nps_known, low_nps),
)
REASONS = tuple(gate.reason for gate in GATES)


def failed_gate(state: AccountState, rules: SegmentRules) -> tuple[str, dict[str, Any]] | None:
    """The first gate the account fails now, with its reason and numbers."""
    for gate, rule in rules.gate_checks:
        if gate.known(state, rule):
            detail = gate.check(state, rule)
            if detail is not None:
                return gate.reason, detail
    return None

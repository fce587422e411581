"""The gates, each declared once (numbers, check, reason), checked in order before publishing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import Field

from streams.clock import DAY, format_time
from streams.domain.rule_fields import Strict
from streams.domain.state import AccountState

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


# The contract's gates, in the order they are checked (contract section 6).
GATES: tuple[Gate[Any], ...] = (
    Gate("activation", "gated_not_activated", ActivationRule, not_activated),
    Gate("health", "gated_health", HealthRule, unhealthy),
    Gate("churn_risk", "gated_churn_risk", ChurnRiskRule, churn_risk),
)
REASONS = tuple(gate.reason for gate in GATES)


def failed_gate(state: AccountState, rules: SegmentRules) -> tuple[str, dict[str, Any]] | None:
    """The first gate the account fails now, with its reason and numbers."""
    for gate, rule in rules.gate_checks:
        detail = gate.check(state, rule)
        if detail is not None:
            return gate.reason, detail
    return None

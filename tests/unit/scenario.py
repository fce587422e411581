"""Literal scenarios for the unit tests: events from dicts, run through a fresh Detector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.domain.decide import Detector, Outcome
from streams.domain.state import AccountState
from streams.events import Event, decode
from streams.rules import Rules, load
from streams.signals import Decision, ExpansionSignal

ACCOUNT = "acme"
# Day 0 of every scenario: midnight UTC at the start of a 31-day month.
BASE = datetime(2024, 5, 1, tzinfo=UTC)
RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
SHIPPED_RULES = load(RULES_FILE)


def at(day: float) -> str:
    """The RFC 3339 time `day` days after BASE, e.g. at(1.5) == "2024-05-02T12:00:00Z"."""
    return (BASE + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def account(day: float = 0, **properties: Any) -> dict[str, Any]:
    """An account_updated that passes every gate: activated 90 days before BASE, healthy."""
    defaults = {"activated_at": at(-90), "health_score": 90, "mrr": 1000}
    return {"type": "account_updated", "day": day, "properties": {**defaults, **properties}}


def events(*objs: dict[str, Any], account_id: str = ACCOUNT, prefix: str = "e") -> list[Event]:
    """Decode literal event dicts; event_id defaults to e1, e2, ... and `day` to a timestamp."""
    out = []
    for n, obj in enumerate(objs, start=1):
        obj = dict(obj)
        if "day" in obj:
            obj["timestamp"] = at(obj.pop("day"))
        obj.setdefault("event_id", f"{prefix}{n}")
        obj.setdefault("account_id", account_id)
        decoded = decode(orjson.dumps(obj))
        assert not decoded.rejections, decoded.rejections
        out.extend(decoded.events)
    return out


def fold(evs: list[Event], state: AccountState | None = None) -> AccountState:
    """Apply events to an account state the way the detector does, without deciding."""
    state = state or AccountState(evs[0].account_id)
    for event in evs:
        state.apply(event, saturation_floor=0.8)
    return state


def run(
    evs: list[Event],
    rules: Rules | None = None,
    state: AccountState | None = None,
) -> list[Outcome]:
    """One outcome per event, from a fresh Detector; every signal and decision is validated."""
    detector = Detector(rules or SHIPPED_RULES)
    state = state if state is not None else AccountState(evs[0].account_id)
    outcomes = [detector.apply(state, event) for event in evs]
    for outcome in outcomes:
        for signal in outcome.signals:
            ExpansionSignal.model_validate(signal)
        for decision in outcome.decisions:
            Decision.model_validate(decision)
        if outcome.serving is not None:
            ExpansionSignal.model_validate(outcome.serving)
    return outcomes


def signals(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Every published signal, in order."""
    return [signal for outcome in outcomes for signal in outcome.signals]


def decisions(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Every decision record, in order."""
    return [decision for outcome in outcomes for decision in outcome.decisions]


def brief(signal: dict[str, Any]) -> tuple[str, float, str | None]:
    """(trigger, level, supersedes) - enough to read a sequence of signals at a glance."""
    return signal["trigger"], signal["level"], signal["supersedes"]


def reasons(outcomes: list[Outcome]) -> list[tuple[str, float, str]]:
    """(trigger, level, reason) of every decision, in order."""
    return [(d["trigger"], d["level"], d["reason"]) for d in decisions(outcomes)]


def champion(day: float) -> dict[str, Any]:
    return {"type": "external_signal", "day": day, "properties": {"kind": "champion_promoted"}}


def funding(day: float) -> dict[str, Any]:
    return {"type": "external_signal", "day": day, "properties": {"kind": "funding_round"}}


def invite(day: float, user: str = "u1", invitee: str | None = None) -> dict[str, Any]:
    invitee = invitee or f"guest-{day}@example.com"
    return {"type": "invite_sent", "day": day, "user_id": user, "properties": {"invitee": invitee}}


def active(day: float, user: str, department: str | None = None) -> dict[str, Any]:
    properties = {"department": department} if department else {}
    return {"type": "user_active", "day": day, "user_id": user, "properties": properties}


def seat(
    day: float, user: str, department: str | None = None, removed: bool = False
) -> dict[str, Any]:
    kind = "seat_removed" if removed else "seat_assigned"
    properties = {"department": department} if department else {}
    return {"type": kind, "day": day, "user_id": user, "properties": properties}


def gate_hit(day: float, user: str, feature: str) -> dict[str, Any]:
    return {
        "type": "feature_gate_hit",
        "day": day,
        "user_id": user,
        "properties": {"feature": feature},
    }


def usage(day: float, quantity: float, meter: str = "api_calls") -> dict[str, Any]:
    return {
        "type": "usage_recorded",
        "day": day,
        "properties": {"meter": meter, "quantity": quantity},
    }


def workflow(day: float, user: str, name: str, status: str = "completed") -> dict[str, Any]:
    properties = {"workflow": name, "status": status}
    return {"type": "workflow_run", "day": day, "user_id": user, "properties": properties}


def feature(day: float, user: str, name: str) -> dict[str, Any]:
    return {"type": "feature_used", "day": day, "user_id": user, "properties": {"feature": name}}


def ticket(day: float) -> dict[str, Any]:
    return {"type": "support_ticket", "day": day, "properties": {"severity": "high"}}


def outcome(day: float, stage: str, signal_id: str | None = None, **more: Any) -> dict[str, Any]:
    properties = {"stage": stage, **more}
    if signal_id is not None:
        properties["signal_id"] = signal_id
    return {"type": "expansion_outcome", "day": day, "properties": properties}


def ask(day: float, kind: str = "expansion_inquiry") -> dict[str, Any]:
    detail = {"team": "finance"} if kind == "expansion_inquiry" else {"need": "sso"}
    return {"type": "external_signal", "day": day, "properties": {"kind": kind, "detail": detail}}

"""A trigger added by one definition in this module alone fires, is gated, collides and routes."""

from __future__ import annotations

from typing import Any

import pytest
from scenario import account, events, invite, usage

from streams.domain.decide import Detector, Outcome
from streams.domain.rule_fields import Count
from streams.domain.state import AccountState
from streams.domain.triggers import CATALOG, Firing, Trigger, TriggerRule
from streams.events import Event
from streams.rules import RulesError, parse


class ToyRule(TriggerRule):
    invites: Count = 2


def toy(state: AccountState, event: Event, rule: ToyRule) -> Firing | None:
    """A couple of invites in the last 30 days."""
    sent = state.window_sum(state.invites, 30)
    return (1.0, {"invites": sent}) if sent >= rule.invites else None


# between usage_ceiling (10) and seat_saturation (20) in the default priority
TOY = Trigger("toy", "tier", ToyRule, toy, lambda e: f"{e['invites']} invites", position=15)
WITH_TOY = CATALOG.with_triggers(TOY)


def play(*objs: dict[str, Any], rules: dict[str, Any] | None = None) -> list[Outcome]:
    detector = Detector(parse(rules or {}, catalog=WITH_TOY))
    evs: list[Event] = events(*objs)
    state = AccountState(evs[0].account_id)
    return [detector.apply(state, event) for event in evs]


def published(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [signal for outcome in outcomes for signal in outcome.signals]


def logged(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    return [(d["trigger"], d["reason"]) for outcome in outcomes for d in outcome.decisions]


def test_the_toy_fires_with_its_expansion_type_and_routes_by_its_share() -> None:
    small = published(play(account(0, mrr=1000), invite(1), invite(2)))
    large = published(play(account(0, mrr=5000), invite(1), invite(2)))

    assert [(s["trigger"], s["expansion_type"], s["source_event_id"]) for s in small] == [
        ("toy", "tier", "e3")
    ]
    assert (small[0]["estimated_expansion_mrr"], small[0]["route"]) == (400.0, "in_app")
    assert (large[0]["estimated_expansion_mrr"], large[0]["route"]) == (2000.0, "sales")
    # second of fifteen in priority: 50 x level + 30 x 13/14
    assert small[0]["score"] == 78
    assert small[0]["evidence"] == {"invites": 2}


def test_the_toy_is_gated_like_any_trigger() -> None:
    not_activated = {"type": "account_updated", "day": 0, "properties": {"mrr": 1000}}

    outcomes = play(not_activated, invite(1), invite(2), invite(3))

    assert published(outcomes) == []
    assert logged(outcomes) == [("toy", "gated_not_activated")]


def test_a_lower_priority_trigger_joins_the_toy_and_a_higher_one_supersedes_it() -> None:
    outcomes = play(
        account(0, usage_limits={"api_calls": 1000}),
        *[invite(1 + n / 10, "u1", f"g{n}@example.com") for n in range(5)],
        usage(2, 900),
    )

    toy_signal, ceiling = published(outcomes)
    assert toy_signal["trigger"] == "toy"
    assert ("invite_surge", "collision") in logged(outcomes)
    assert (ceiling["trigger"], ceiling["supersedes"]) == ("usage_ceiling", toy_signal["signal_id"])
    assert ceiling["co_signals"] == ["toy", "invite_surge"]


def test_the_rules_file_configures_and_ranks_the_toy() -> None:
    rules = {
        "defaults": {"triggers": {"toy": {"invites": 3}}, "priority": ["toy", "usage_ceiling"]}
    }

    ranked = parse(rules, catalog=WITH_TOY).for_segment("smb")
    outcomes = play(account(0), invite(1), invite(2), invite(3), rules=rules)

    assert ranked.priority[:3] == ["toy", "usage_ceiling", "seat_saturation"]
    assert [s["source_event_id"] for s in published(outcomes)] == ["e4"]
    assert published(play(account(0), invite(1), invite(2), rules=rules)) == []


def test_a_switched_off_toy_does_not_fire() -> None:
    rules = {"defaults": {"triggers": {"toy": {"enabled": False}}}}

    assert published(play(account(0), invite(1), invite(2), rules=rules)) == []


def test_the_detectors_own_rules_know_nothing_of_the_toy() -> None:
    with pytest.raises(RulesError, match="defaults.triggers.toy"):
        parse({"defaults": {"triggers": {"toy": {}}}})


def test_a_second_trigger_of_the_same_name_or_position_is_refused() -> None:
    with pytest.raises(ValueError, match="same name: toy"):
        WITH_TOY.with_triggers(TOY)
    with pytest.raises(ValueError, match="same position: 10"):
        CATALOG.with_triggers(Trigger("other", "seat", ToyRule, toy, str, position=10))

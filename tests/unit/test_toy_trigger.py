"""A trigger added by one definition in this module alone fires, is gated, collides and routes."""

from __future__ import annotations

from typing import Any

import pytest
from scenario import account, active, events, invite, usage

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


def checked_days(reads: tuple[str, ...] | None, *objs: dict[str, Any]) -> list[float]:
    """The event times (in days) at which a toy reading `reads` was checked."""
    calls: list[float] = []

    def counted(state: AccountState, event: Event, rule: ToyRule) -> Firing | None:
        calls.append(round((event.timestamp - evs[0].timestamp) / 86_400, 2))
        return toy(state, event, rule)

    counting = Trigger("toy", "tier", ToyRule, counted, str, position=15, reads=reads)
    detector = Detector(parse({}, catalog=CATALOG.with_triggers(counting)))
    evs: list[Event] = events(*objs)
    state = AccountState(evs[0].account_id)
    for event in evs:
        detector.apply(state, event)
    return calls


def test_a_trigger_that_reads_tallies_is_checked_again_only_when_they_change_or_the_day_does() -> (
    None
):
    day_one = [active(1.1, "u1"), active(1.2, "u1"), invite(1.3), active(1.4, "u1")]

    assert checked_days(("tally",), account(0), *day_one, active(2.1, "u1")) == [
        0.0,  # the first evaluation
        1.1,  # a new day
        1.3,  # an invite: a tally changed
        2.1,  # a new day
    ]
    # user activity is not a tally; a trigger reading activity sees it change on day 1 once
    assert checked_days(("activity",), account(0), *day_one) == [0.0, 1.1]
    # a trigger that reads the clock is checked on every event
    assert checked_days(None, account(0), *day_one) == [0.0, 1.1, 1.2, 1.3, 1.4]


def test_what_the_toy_gave_still_fires_when_it_is_not_checked_again() -> None:
    counting_toy = Trigger("toy", "tier", ToyRule, toy, str, position=15, reads=("tally",))
    detector = Detector(parse({}, catalog=CATALOG.with_triggers(counting_toy)))
    evs = events(account(0), invite(1.1), invite(1.2), active(1.3, "u1"), active(1.4, "u2"))
    state = AccountState(evs[0].account_id)

    outcomes = [detector.apply(state, event) for event in evs]

    # published at the second invite; fired again (and in cooldown) on the activity after it
    assert [s["source_event_id"] for s in published(outcomes)] == ["e3"]
    assert logged(outcomes) == [("toy", "cooldown")]


def test_a_trigger_reading_an_unknown_change_is_refused() -> None:
    with pytest.raises(ValueError, match="toy reads unknown changes: weather"):
        Trigger("toy", "tier", ToyRule, toy, str, position=15, reads=("weather",))

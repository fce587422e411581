"""Gates, cooldown, collision, routing, dedup and lateness: events in, signals and decisions out."""

from __future__ import annotations

import hashlib
from typing import Any, get_args

import orjson
import pytest
from scenario import (
    ACCOUNT,
    SHIPPED_RULES,
    account,
    active,
    at,
    brief,
    champion,
    decisions,
    events,
    funding,
    gate_hit,
    invite,
    reasons,
    run,
    seat,
    signals,
    usage,
)

from streams.domain.decide import Detector, route_and_score
from streams.domain.state import AccountState
from streams.events import decode
from streams.rules import TRIGGERS, parse
from streams.signals import Decision, DecisionReason, ExpansionSignal, signal_id
from streams.simulate.world import simulate

SMB = SHIPPED_RULES.for_segment("smb")


def stamp(day: float) -> str:
    """detected_at of an event at(day): milliseconds and Z."""
    return at(day).replace("Z", ".000Z")


def sid(trigger: str, level: float, source_event_id: str, account_id: str = ACCOUNT) -> str:
    return signal_id(account_id, trigger, level, source_event_id)


def not_activated(day: float = 0, **properties: Any) -> dict[str, Any]:
    return {"type": "account_updated", "day": day, "properties": {"mrr": 1000, **properties}}


def seats(count: int, day: float = 0) -> list[dict[str, Any]]:
    return [seat(day, f"u{n}") for n in range(count)]


def team_active(day: float, count: int) -> list[dict[str, Any]]:
    """Every seat holder active: keeps the churn-risk gate quiet over long scenarios."""
    return [active(day, f"u{n}") for n in range(count)]


def five_invites(day: float = 0) -> list[dict[str, Any]]:
    return [invite(day + n / 10, "u1", f"g{day}-{n}@example.com") for n in range(5)]


def with_id(obj: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {**obj, "event_id": event_id}


# -- a published signal --------------------------------------------------------------


def test_an_external_signal_on_a_healthy_activated_account_publishes_a_signal() -> None:
    outcomes = run(events(account(0), champion(1)))

    assert outcomes[1].signals == [
        {
            "schema_version": 2,
            "signal_id": sid("relationship_change", 1.0, "e2"),
            "account_id": "acme",
            "trigger": "relationship_change",
            "expansion_type": "seat",
            "level": 1.0,
            "score": 52,
            "route": "in_app",
            "segment": "smb",
            "estimated_expansion_mrr": 150.0,
            "signal_stack": 1,
            "co_signals": [],
            "supersedes": None,
            "evidence": {"kind": "champion_promoted", "detail": {}},
            "account": {
                "plan": None,
                "seat_limit": None,
                "seats_in_use": 0,
                "active_users_30d": 0,
                "mrr": 1000.0,
                "health_score": 90.0,
                "nps": None,
                "renewal_date": None,
                "activated_at": stamp(-90),
                "departments_30d": 0,
            },
            "detected_at": stamp(1),
            "emitted_at": None,
            "source_event_id": "e2",
        }
    ]
    assert outcomes[1].decisions == []
    assert outcomes[1].serving == outcomes[1].signals[0]


def test_a_signal_carries_the_accounts_segment() -> None:
    [signal] = signals(run(events(account(0, segment="enterprise"), champion(1))))

    assert signal["segment"] == "enterprise"


def test_an_event_that_fires_nothing_has_an_empty_outcome() -> None:
    outcome = run(events(account(0), active(1, "u1")))[1]

    assert (outcome.signals, outcome.decisions, outcome.serving) == ([], [], None)
    assert (outcome.duplicate, outcome.late) == (False, False)


# -- gates ------------------------------------------------------------------------------


def test_an_account_never_activated_is_gated_with_a_decision_record() -> None:
    outcomes = run(events(not_activated(0), champion(1)))

    would_be = sid("relationship_change", 1.0, "e2")
    decision_id = hashlib.sha256(f"{would_be}\x1fgated_not_activated".encode()).hexdigest()[:32]
    [published_if_activated] = signals(run(events(account(0), champion(1))))
    assert signals(outcomes) == []
    assert outcomes[1].serving is None
    assert outcomes[1].decisions == [
        {
            "schema_version": 2,
            "decision_id": decision_id,
            "account_id": "acme",
            "trigger": "relationship_change",
            "level": 1.0,
            "reason": "gated_not_activated",
            "detail": {"activated_at": None, "activation_days": 30},
            "detected_at": stamp(1),
            "source_event_id": "e2",
            # the signal, with the account as it is: not activated, health not known
            "signal": {
                **published_if_activated,
                "account": {
                    **published_if_activated["account"],
                    "activated_at": None,
                    "health_score": None,
                },
            },
        }
    ]


@pytest.mark.parametrize(("segment", "days"), [("smb", 30), ("mid_market", 45), ("enterprise", 60)])
def test_activation_is_gated_until_the_segments_days_have_passed(segment: str, days: int) -> None:
    one_hour = 1 / 24
    too_recent = account(0, segment=segment, activated_at=at(-days + one_hour))
    long_enough = account(0, segment=segment, activated_at=at(-days))

    assert reasons(run(events(too_recent, champion(0)))) == [
        ("relationship_change", 1.0, "gated_not_activated")
    ]
    assert [brief(s) for s in signals(run(events(long_enough, champion(0))))] == [
        ("relationship_change", 1.0, None)
    ]


def test_the_activation_gate_reports_when_the_account_was_activated() -> None:
    [decision] = decisions(run(events(account(0, activated_at=at(-10)), champion(1))))

    assert decision["detail"] == {"activated_at": stamp(-10), "activation_days": 30}


@pytest.mark.parametrize(
    ("segment", "threshold"), [("smb", 75), ("mid_market", 80), ("enterprise", 85)]
)
def test_health_below_the_segments_threshold_is_gated(segment: str, threshold: int) -> None:
    unhealthy = account(0, segment=segment, health_score=threshold - 0.5)
    healthy = account(0, segment=segment, health_score=threshold)

    [decision] = decisions(run(events(unhealthy, champion(1))))
    assert (decision["reason"], decision["detail"]) == (
        "gated_health",
        {"health_score": threshold - 0.5, "min_health_score": threshold},
    )
    assert len(signals(run(events(healthy, champion(1))))) == 1


def test_an_unknown_health_score_passes_the_health_gate() -> None:
    outcomes = run(events(account(0, health_score=None), champion(1)))

    assert [brief(s) for s in signals(outcomes)] == [("relationship_change", 1.0, None)]


def test_the_activation_gate_is_reported_before_the_health_gate() -> None:
    outcomes = run(events(not_activated(0, health_score=10), champion(1)))

    assert reasons(outcomes) == [("relationship_change", 1.0, "gated_not_activated")]


def churn(active_recently: int) -> list[dict[str, Any]]:
    """10 users active on day 0, `active_recently` of them again on day 14, then a signal."""
    return [
        account(0),
        *[active(0, f"u{n}") for n in range(10)],
        *[active(14, f"u{n}") for n in range(active_recently)],
        champion(14),
    ]


def test_fewer_than_70_percent_of_the_users_active_the_14_days_before_is_churn_risk() -> None:
    outcomes = run(events(*churn(6)))

    assert signals(outcomes) == []
    [decision] = decisions(outcomes)
    assert (decision["reason"], decision["detail"]) == (
        "gated_churn_risk",
        {
            "active_users_recent": 6,
            "active_users_before": 10,
            "window_days": 14,
            "churn_ratio": 0.7,
        },
    )


def test_70_percent_of_the_users_active_the_14_days_before_is_not_churn_risk() -> None:
    outcomes = run(events(*churn(7)))

    assert [brief(s) for s in signals(outcomes)] == [("relationship_change", 1.0, None)]


def test_an_account_with_no_users_before_is_not_churn_risk() -> None:
    outcomes = run(events(account(0), active(20, "u1"), champion(20)))

    assert len(signals(outcomes)) == 1


def test_a_gated_trigger_is_logged_once_not_on_every_event() -> None:
    outcomes = run(
        events(not_activated(0), *five_invites(1), invite(2), invite(3), active(4, "u2"))
    )

    assert reasons(outcomes) == [("invite_surge", 1.0, "gated_not_activated")]
    assert outcomes[5].decisions != []


def test_a_gated_trigger_is_logged_again_for_each_new_level() -> None:
    outcomes = run(
        events(
            not_activated(0, seat_limit=10),
            *seats(8),
            active(14, "u0"),
            active(15, "u0"),
            seat(16, "u8"),
            active(17, "u0"),
            seat(18, "u9"),
        )
    )

    assert reasons(outcomes) == [
        ("seat_saturation", 0.8, "gated_not_activated"),
        ("seat_saturation", 0.9, "gated_not_activated"),
        ("seat_saturation", 1.0, "gated_not_activated"),
    ]


def test_a_gated_trigger_is_logged_again_for_a_new_reason() -> None:
    outcomes = run(
        events(
            not_activated(0),
            *five_invites(1),
            {
                "type": "account_updated",
                "day": 2,
                "properties": {"activated_at": at(-90), "health_score": 50},
            },
            invite(3),
        )
    )

    assert reasons(outcomes) == [
        ("invite_surge", 1.0, "gated_not_activated"),
        ("invite_surge", 1.0, "gated_health"),
    ]


def test_a_gated_trigger_is_published_once_the_gate_clears() -> None:
    outcomes = run(
        events(
            not_activated(0),
            *five_invites(1),
            {"type": "account_updated", "day": 2, "properties": {"activated_at": at(-90)}},
        )
    )

    assert reasons(outcomes) == [("invite_surge", 1.0, "gated_not_activated")]
    assert outcomes[-1].signals == [
        {
            **outcomes[-1].signals[0],
            "signal_id": sid("invite_surge", 1.0, "e7"),
            "trigger": "invite_surge",
            "source_event_id": "e7",
            "detected_at": stamp(2),
            "evidence": {"invites": 5, "window_days": 30},
        }
    ]


def test_a_trigger_gated_by_health_is_published_once_health_recovers() -> None:
    outcomes = run(
        events(
            account(0, health_score=60),
            *five_invites(1),
            {"type": "account_updated", "day": 2, "properties": {"health_score": 76}},
        )
    )

    assert reasons(outcomes) == [("invite_surge", 1.0, "gated_health")]
    assert [brief(s) for s in outcomes[-1].signals] == [("invite_surge", 1.0, None)]


# -- cooldown -----------------------------------------------------------------------------


def test_the_same_level_within_the_cooldown_is_logged_once_as_cooldown() -> None:
    outcomes = run(events(account(0), *five_invites(0), invite(1), invite(2), invite(13)))

    assert [brief(s) for s in signals(outcomes)] == [("invite_surge", 1.0, None)]
    [decision] = decisions(outcomes)
    assert decision["source_event_id"] == "e7"
    assert (decision["reason"], decision["detail"]) == (
        "cooldown",
        {"published_level": 1.0, "published_at": stamp(0.4), "cooldown_days": 14},
    )


def test_a_trigger_fires_again_once_the_cooldown_has_passed() -> None:
    # the first signal comes from the fifth invite, at day 0.4
    before = run(events(account(0), *five_invites(0), invite(14.39)))
    after = run(events(account(0), *five_invites(0), invite(14.4)))

    assert [brief(s) for s in signals(before)] == [("invite_surge", 1.0, None)]
    assert [brief(s) for s in signals(after)] == [
        ("invite_surge", 1.0, None),
        ("invite_surge", 1.0, None),
    ]
    assert after[-1].signals[0]["signal_id"] == sid("invite_surge", 1.0, "e7")
    assert after[-1].signals[0]["evidence"] == {"invites": 6, "window_days": 30}


def test_each_rise_in_level_publishes_and_supersedes_the_previous_signal() -> None:
    outcomes = run(
        events(
            account(0, seat_limit=10),
            *seats(8),
            *team_active(10, 8),
            active(14, "u0"),
            seat(15, "u8"),
            seat(16, "u9"),
        )
    )

    first, second, third = signals(outcomes)
    assert [brief(s) for s in (first, second, third)] == [
        ("seat_saturation", 0.8, None),
        ("seat_saturation", 0.9, first["signal_id"]),
        ("seat_saturation", 1.0, second["signal_id"]),
    ]
    assert [(s["score"], s["signal_stack"], s["co_signals"]) for s in (first, second, third)] == [
        (68, 1, []),
        (73, 1, []),
        (78, 1, []),
    ]
    assert [s["evidence"]["seats_in_use"] for s in (first, second, third)] == [8, 9, 10]


def test_a_level_that_falls_and_rises_again_within_the_cooldown_is_not_published_again() -> None:
    outcomes = run(
        events(
            account(0, seat_limit=10),
            *seats(9),
            *team_active(10, 9),
            active(14, "u0"),
            seat(15, "u9"),
            seat(16, "u9", removed=True),
            seat(17, "u9"),
        )
    )

    assert [brief(s) for s in signals(outcomes)] == [
        ("seat_saturation", 0.9, None),
        ("seat_saturation", 1.0, sid("seat_saturation", 0.9, "e20")),
    ]
    assert reasons(outcomes) == [
        ("seat_saturation", 0.9, "cooldown"),
        ("seat_saturation", 1.0, "cooldown"),
    ]


def test_a_saturated_account_re_fires_the_same_level_after_14_days() -> None:
    outcomes = run(
        events(
            account(0, seat_limit=10),
            *seats(8),
            *team_active(10, 8),
            active(14, "u0"),
            active(15, "u0"),
            *team_active(20, 8),
            active(28, "u0"),
        )
    )

    assert [(s["level"], s["detected_at"], s["supersedes"]) for s in signals(outcomes)] == [
        (0.8, stamp(14), None),
        (0.8, stamp(28), None),
    ]
    assert reasons(outcomes) == [("seat_saturation", 0.8, "cooldown")]


# -- collision ----------------------------------------------------------------------------


def test_a_lower_priority_trigger_joins_the_primary_as_a_co_signal() -> None:
    outcomes = run(events(account(0), champion(1), funding(2)))

    primary = outcomes[1].signals[0]
    assert outcomes[2].signals == []
    assert reasons(outcomes) == [("company_growth", 1.0, "collision")]
    assert outcomes[2].decisions[0]["detail"] == {"primary_signal_id": primary["signal_id"]}
    assert outcomes[2].serving == {
        **primary,
        "co_signals": ["company_growth"],
        "signal_stack": 2,
        "score": 62,
        "route": "in_app",
        "estimated_expansion_mrr": 150.0,
    }


def test_a_co_signal_that_keeps_holding_is_logged_once() -> None:
    outcomes = run(
        events(
            account(0, usage_limits={"api_calls": 1000}),
            usage(1, 850),
            *five_invites(2),
            invite(3),
            invite(4),
        )
    )

    assert [brief(s) for s in signals(outcomes)] == [("usage_ceiling", 0.8, None)]
    assert reasons(outcomes) == [
        ("usage_ceiling", 0.8, "cooldown"),
        ("invite_surge", 1.0, "collision"),
    ]


def test_a_trigger_of_equal_priority_joins_the_primary_without_changing_it() -> None:
    rules = parse({"defaults": {"cooldown_days": 0}})
    exec_sponsor = {
        "type": "external_signal",
        "day": 2,
        "properties": {"kind": "exec_sponsor_added"},
    }

    outcomes = run(events(account(0), champion(1), exec_sponsor), rules=rules)

    assert [brief(s) for s in signals(outcomes)] == [("relationship_change", 1.0, None)]
    assert reasons(outcomes) == [("relationship_change", 1.0, "collision")]
    assert outcomes[2].serving is None


def test_a_higher_priority_trigger_supersedes_the_primary_and_carries_it_as_a_co_signal() -> None:
    outcomes = run(events(account(0), funding(1), champion(2)))

    first, second = signals(outcomes)
    assert second == {
        **second,
        "trigger": "relationship_change",
        "supersedes": first["signal_id"],
        "co_signals": ["company_growth"],
        "signal_stack": 2,
        "score": 62,
    }
    assert decisions(outcomes) == []
    assert outcomes[2].serving == second


def test_a_superseding_signal_carries_all_the_primarys_co_signals() -> None:
    outcomes = run(events(account(0), champion(1), funding(2), *five_invites(3)))

    first, second = signals(outcomes)
    assert (second["trigger"], second["supersedes"]) == ("invite_surge", first["signal_id"])
    assert second["co_signals"] == ["relationship_change", "company_growth"]
    assert (second["signal_stack"], second["score"]) == (3, 82)


def test_after_the_collision_window_a_trigger_becomes_a_new_primary() -> None:
    within = run(events(account(0), funding(1), champion(7.99)))
    after = run(events(account(0), funding(1), champion(8)))

    assert [brief(s) for s in signals(within)] == [
        ("company_growth", 1.0, None),
        ("relationship_change", 1.0, sid("company_growth", 1.0, "e2")),
    ]
    assert [brief(s) for s in signals(after)] == [
        ("company_growth", 1.0, None),
        ("relationship_change", 1.0, None),
    ]
    assert signals(after)[1]["co_signals"] == []


def test_a_lower_priority_trigger_is_published_once_the_collision_window_has_passed() -> None:
    within = run(events(account(0), champion(1), funding(7.99)))
    after = run(events(account(0), champion(1), funding(8)))

    assert reasons(within) == [("company_growth", 1.0, "collision")]
    assert [brief(s) for s in signals(after)] == [
        ("relationship_change", 1.0, None),
        ("company_growth", 1.0, None),
    ]


def test_several_triggers_on_one_event_publish_the_highest_with_the_others_as_co_signals() -> None:
    outcomes = run(
        events(
            not_activated(0),
            *five_invites(1),
            gate_hit(1.5, "u1", "sso"),
            gate_hit(1.5, "u1", "audit_log"),
            gate_hit(1.5, "u1", "api_access"),
            {"type": "account_updated", "day": 2, "properties": {"activated_at": at(-90)}},
        )
    )

    assert reasons(outcomes) == [
        ("invite_surge", 1.0, "gated_not_activated"),
        ("gated_feature_demand", 1.0, "gated_not_activated"),
        ("invite_surge", 1.0, "collision"),
    ]
    [signal] = outcomes[-1].signals
    assert signal == {
        **signal,
        "trigger": "gated_feature_demand",
        "expansion_type": "tier",
        "co_signals": ["invite_surge"],
        "signal_stack": 2,
        "supersedes": None,
        "score": 81,
        "estimated_expansion_mrr": 400.0,
        "route": "in_app",
    }
    assert outcomes[-1].decisions[0]["detail"] == {"primary_signal_id": signal["signal_id"]}


def test_a_stack_of_four_routes_the_primary_to_sales() -> None:
    outcomes = run(
        events(
            account(0, usage_limits={"api_calls": 1000}),
            usage(1, 800),
            *five_invites(2),
            champion(3),
            funding(4),
        )
    )

    assert [brief(s) for s in signals(outcomes)] == [("usage_ceiling", 0.8, None)]
    serving = [o.serving for o in outcomes if o.serving is not None]
    assert [(s["signal_stack"], s["route"], s["score"]) for s in serving] == [
        (1, "in_app", 70),
        (2, "in_app", 80),
        (3, "in_app", 90),
        (4, "sales", 100),
    ]
    assert serving[-1]["co_signals"] == ["invite_surge", "relationship_change", "company_growth"]


# -- routing and score ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "estimate"),
    [
        ("relationship_change", 150.0),
        ("usage_ceiling", 300.0),
        ("gated_feature_demand", 400.0),
        ("new_department", 750.0),
    ],
)
def test_the_estimate_is_mrr_times_the_share_of_the_expansion_type(
    trigger: str, estimate: float
) -> None:
    assert route_and_score(SMB, trigger, 1.0, 1000, 1)[1] == estimate


@pytest.mark.parametrize(
    ("mrr", "stack", "route", "estimate"),
    [
        (1249.975, 1, "in_app", 499.99),
        (1250, 1, "csm", 500.0),
        (4999.975, 1, "csm", 1999.99),
        (5000, 1, "sales", 2000.0),
        (0, 3, "in_app", 0.0),
        (0, 4, "sales", 0.0),
        (1250, 3, "csm", 500.0),
    ],
)
def test_route_boundaries(mrr: float, stack: int, route: str, estimate: float) -> None:
    assert route_and_score(SMB, "gated_feature_demand", 1.0, mrr, stack)[:2] == (route, estimate)


def test_an_account_without_mrr_has_no_estimate_and_goes_in_app() -> None:
    assert route_and_score(SMB, "new_department", 1.0, None, 1)[:2] == ("in_app", 0.0)


def test_a_large_account_routes_to_sales_end_to_end() -> None:
    [signal] = signals(run(events(account(0, mrr=20000), champion(1))))

    assert (signal["route"], signal["estimated_expansion_mrr"]) == ("sales", 3000.0)


def test_score_rises_with_level() -> None:
    scores = [route_and_score(SMB, "seat_saturation", level, 0, 1)[2] for level in (0.8, 0.9, 1.0)]

    assert scores == [68, 73, 78]


def test_score_rises_with_priority() -> None:
    scores = [route_and_score(SMB, trigger, 1.0, 0, 1)[2] for trigger in SMB.priority]

    assert scores == [80, 78, 75, 73, 71, 68, 66, 64, 62, 59, 57, 55, 52, 50]


def test_score_rises_with_the_signal_stack_and_stays_within_0_to_100() -> None:
    scores = [route_and_score(SMB, "company_growth", 1.0, 0, stack)[2] for stack in range(1, 9)]

    assert scores == [50, 60, 70, 80, 90, 100, 100, 100]
    assert route_and_score(SMB, "usage_ceiling", 1.0, 0, 8)[2] == 100


# -- duplicates ----------------------------------------------------------------------------


def test_a_duplicate_event_id_within_24_hours_is_counted_once() -> None:
    outcomes = run(
        events(
            account(0),
            *[with_id(invite(n / 10), f"inv-{n}") for n in range(4)],
            with_id(invite(0.9), "inv-3"),
        )
    )

    assert [o.duplicate for o in outcomes] == [False, False, False, False, False, True]
    assert signals(outcomes) == decisions(outcomes) == []


def test_a_duplicate_is_not_applied_twice() -> None:
    state = AccountState(ACCOUNT)

    run(
        events(
            account(0, usage_limits={"api_calls": 1000}),
            usage(1, 500),
            with_id(usage(1.5, 500), "e2"),
        ),
        state=state,
    )

    assert state.usage["api_calls"][1] == 500


def test_a_duplicate_of_the_event_that_fired_fires_nothing() -> None:
    outcomes = run(events(account(0), champion(1), with_id(champion(1), "e2")))

    assert outcomes[2].duplicate
    assert (outcomes[2].signals, outcomes[2].decisions, outcomes[2].serving) == ([], [], None)


def test_the_same_event_id_more_than_24_hours_apart_counts_again() -> None:
    outcomes = run(
        events(
            account(0),
            *[with_id(invite(n / 10), f"inv-{n}") for n in range(4)],
            with_id(invite(1.31), "inv-3"),
        )
    )

    assert [o.duplicate for o in outcomes] == [False] * 6
    assert [brief(s) for s in signals(outcomes)] == [("invite_surge", 1.0, None)]


def test_a_duplicate_of_a_late_event_is_counted_once() -> None:
    outcomes = run(
        events(
            account(0),
            *[invite(10 + n / 10) for n in range(2)],
            with_id(invite(5), "old"),
            with_id(invite(5), "old"),
            invite(10.5),
        )
    )

    assert [(o.late, o.duplicate) for o in outcomes[3:]] == [
        (True, False),
        (False, True),
        (False, False),
    ]
    assert signals(outcomes) == []


def test_the_same_event_id_in_two_accounts_counts_in_each() -> None:
    one = run(events(account(0), champion(1), account_id="one"))
    two = run(events(account(0), champion(1), account_id="two"))

    assert [s["signal_id"] for s in signals(one) + signals(two)] == [
        sid("relationship_change", 1.0, "e2", "one"),
        sid("relationship_change", 1.0, "e2", "two"),
    ]


# -- late events ----------------------------------------------------------------------


def test_an_event_less_than_an_hour_older_than_now_is_applied_and_may_fire() -> None:
    outcomes = run(events(account(0), active(2, "u1"), champion(2 - 59 / 1440)))

    assert outcomes[2].late is False
    assert [s["detected_at"] for s in signals(outcomes)] == ["2024-05-02T23:01:00.000Z"]


def test_an_event_exactly_an_hour_older_than_now_is_not_late() -> None:
    outcomes = run(events(account(0), active(2, "u1"), champion(2 - 1 / 24)))

    assert outcomes[2].late is False
    assert len(outcomes[2].signals) == 1


def test_an_event_more_than_an_hour_older_than_now_fires_nothing_and_is_late() -> None:
    outcomes = run(events(account(0), active(2, "u1"), champion(2 - 61 / 1440)))

    assert outcomes[2].late is True
    assert (outcomes[2].signals, outcomes[2].decisions, outcomes[2].serving) == ([], [], None)


def test_a_late_event_still_updates_the_state() -> None:
    outcomes = run(
        events(account(0), *[invite(10 + n / 10) for n in range(3)], invite(2), invite(10.5))
    )

    assert outcomes[4].late is True
    [signal] = outcomes[5].signals
    assert signal["evidence"] == {"invites": 5, "window_days": 30}


def test_a_late_event_does_not_move_the_clock_back() -> None:
    state = AccountState(ACCOUNT)

    run(events(account(0), active(2, "u1"), active(1, "u2")), state=state)

    assert state.now == events(active(2, "u1"))[0].timestamp


# -- determinism and the output contract -------------------------------------------------


def busy_scenario() -> list[dict[str, Any]]:
    return [
        account(0, seat_limit=10, usage_limits={"api_calls": 1000}, mrr=4000),
        *seats(8),
        active(1, "e1", "eng"),
        funding(2),
        champion(3),
        *five_invites(4),
        gate_hit(5, "u1", "sso"),
        gate_hit(5, "u2", "audit_log"),
        gate_hit(6, "u3", "api_access"),
        usage(8, 850),
        funding(9),
        *team_active(10, 8),
        active(14, "u0"),
        seat(15, "u8"),
        seat(16, "u9"),
        *team_active(20, 10),
        active(31, "s1", "sales"),
        active(31, "s2", "sales"),
        usage(33, 1000),
        *team_active(34, 10),
        funding(40),
        {"type": "account_updated", "day": 41, "properties": {"health_score": 20}},
        champion(42),
    ]


def test_the_same_events_through_fresh_detectors_give_identical_outcomes() -> None:
    first = run(events(*busy_scenario()))
    second = run(events(*busy_scenario()))

    assert first == second
    assert len(signals(first)) >= 5


def test_no_two_signals_share_an_id() -> None:
    ids = [s["signal_id"] for s in signals(run(events(*busy_scenario())))]

    assert len(ids) == len(set(ids))


def test_signal_id_depends_only_on_account_trigger_level_and_source_event() -> None:
    small = signals(run(events(account(0, mrr=10), champion(1))))
    large = signals(run(events(account(0, mrr=90000, segment="enterprise"), champion(1))))

    assert small[0]["signal_id"] == large[0]["signal_id"] == sid("relationship_change", 1.0, "e2")
    assert sid("relationship_change", 1.0, "e2") != sid("relationship_change", 1.0, "e3")
    assert sid("seat_saturation", 0.8, "e2") != sid("seat_saturation", 0.9, "e2")
    assert sid("relationship_change", 1.0, "e2") != sid("company_growth", 1.0, "e2")


def test_every_signal_and_decision_matches_the_output_models() -> None:
    outcomes = run(events(*busy_scenario()))

    published = signals(outcomes)
    logged = decisions(outcomes)
    assert {d["reason"] for d in logged} == {
        "collision",
        "cooldown",
        "gated_churn_risk",
        "gated_health",
    }
    assert [ExpansionSignal.model_validate(s).model_dump() for s in published] == published
    assert [Decision.model_validate(d).model_dump() for d in logged] == logged


def test_a_simulated_base_gives_signals_and_decisions_exactly_as_the_models_write_them() -> None:
    # the detector builds plain dicts for speed; the models are the contract they must match,
    # field for field and in the models' order
    detector = Detector(SHIPPED_RULES)
    states: dict[str, AccountState] = {}
    published, logged, served = [], [], []
    for obj in simulate(accounts=120, days=75, seed=3):
        (event,) = decode(orjson.dumps(obj)).events
        state = states.setdefault(event.account_id, AccountState(event.account_id))
        outcome = detector.apply(state, event)
        published += outcome.signals
        logged += outcome.decisions
        served += [outcome.serving] if outcome.serving is not None else []

    assert {s["trigger"] for s in published} == set(TRIGGERS)
    assert {d["reason"] for d in logged} == set(get_args(DecisionReason))
    for signal in published + served + [d["signal"] for d in logged]:
        assert ExpansionSignal.model_validate(signal).model_dump() == signal
        assert list(signal) == list(ExpansionSignal.model_fields)
    for decision in logged:
        assert Decision.model_validate(decision).model_dump() == decision
        assert list(decision) == list(Decision.model_fields)


def test_the_decision_reasons_are_the_gates_in_their_order_then_cooldown_and_collision() -> None:
    assert get_args(DecisionReason) == (
        "gated_not_activated",
        "gated_health",
        "gated_churn_risk",
        "gated_low_utilization",
        "gated_low_adoption",
        "gated_support_rising",
        "gated_nps",
        "cooldown",
        "collision",
    )

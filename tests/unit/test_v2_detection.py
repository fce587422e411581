"""Contract v2 detection: the new triggers and gates at their edges, min_route, stalled_pql and
the outcomes that answer signals."""

from __future__ import annotations

from typing import Any

import pytest
from scenario import (
    SHIPPED_RULES,
    account,
    active,
    ask,
    brief,
    champion,
    decisions,
    events,
    feature,
    funding,
    outcome,
    reasons,
    run,
    seat,
    signals,
    ticket,
    workflow,
)

from streams.domain.decide import Outcome
from streams.rules import parse

TEAM_FEATURES = SHIPPED_RULES.for_segment("smb").plans["team"].features


def fired(outcomes: list[Outcome]) -> list[tuple[str, float, str]]:
    """(trigger, level, route) of each published signal."""
    return [(s["trigger"], s["level"], s["route"]) for s in signals(outcomes)]


# -- workflow_expansion -----------------------------------------------------------------


def workflow_weeks(weeks: int, distinct: int = 4, failed: int = 0) -> list[dict[str, Any]]:
    """Two users running `distinct` workflows each in each of `weeks` 7-day blocks (the
    latest ending on day 21), plus two more runs a block: 10 runs a block at 4 distinct.
    The first `failed` runs fail."""
    runs = []
    for week in range(4 - weeks, 4):
        day = 7 * week + 0.5
        for user in ("u1", "u2"):
            runs += [workflow(day, user, f"w{n}") for n in range(distinct)]
        runs += [workflow(day + 0.1, "u1", "w0"), workflow(day + 0.1, "u1", "w0")]
    for run_ in runs[:failed]:
        run_["properties"]["status"] = "failed"
    return runs


def test_workflow_expansion_fires_after_four_weeks_of_many_workflows_per_user() -> None:
    outcomes = run(events(account(0), *workflow_weeks(4)))

    [signal] = signals(outcomes)
    assert (signal["trigger"], signal["expansion_type"], signal["route"]) == (
        "workflow_expansion",
        "workflow",
        "in_app",
    )
    assert signal["evidence"] == {
        # decided on the first run that made the latest block count: u1's fourth workflow
        "mean_workflows_per_user": [4.0, 4.0, 4.0, 4.0],
        "block_days": 7,
        "runs": 34,
        "completed": 34,
        "completion": 1.0,
        "window_days": 28,
    }
    assert signal["estimated_expansion_mrr"] == 200.0  # workflow share 0.20


def test_workflow_expansion_needs_all_four_weeks() -> None:
    assert fired(run(events(account(0), *workflow_weeks(3)))) == []


def test_workflow_expansion_needs_more_than_three_workflows_per_user() -> None:
    assert fired(run(events(account(0), *workflow_weeks(4, distinct=3)))) == []


def test_workflow_expansion_needs_more_than_90_percent_completed() -> None:
    # 40 runs: 4 failed is 90 % completed, 3 failed is 92.5 %
    assert fired(run(events(account(0), *workflow_weeks(4, failed=4)))) == []
    assert fired(run(events(account(0), *workflow_weeks(4, failed=3)))) == [
        ("workflow_expansion", 1.0, "in_app")
    ]


# -- workflow_depth ---------------------------------------------------------------------


@pytest.mark.parametrize(("runs", "fires"), [(50, False), (51, True)])
def test_workflow_depth_fires_on_more_than_50_runs_of_one_workflow(runs: int, fires: bool) -> None:
    many = [workflow(1 + n * 0.15, "u1", "invoice-sync") for n in range(runs)]
    few = [workflow(1.1, "u2", "report"), workflow(1.2, "u2", "report", "failed")]

    outcomes = run(events(account(0), *few, *many))

    published = signals(outcomes)
    assert [s["trigger"] for s in published] == (["workflow_depth"] if fires else [])
    if fires:
        # failed runs count as runs; the evidence names the workflow with most runs
        assert published[0]["evidence"] == {
            "workflow": "invoice-sync",
            "runs": 51,
            "window_days": 30,
        }


def test_workflow_depth_counts_runs_in_30_days_only() -> None:
    old = [workflow(0.1 + n * 0.01, "u1", "sync") for n in range(30)]
    recent = [workflow(30.1 + n * 0.01, "u1", "sync") for n in range(30)]

    assert fired(run(events(account(0), *old, *recent))) == []


# -- value_discovery --------------------------------------------------------------------


def features(count: int, day: float = 1) -> list[dict[str, Any]]:
    return [feature(day + n / 100, "u1", name) for n, name in enumerate(TEAM_FEATURES[:count])]


@pytest.mark.parametrize(
    ("used", "level"),
    [(5, None), (6, 0.75), (7, 0.75), (8, 1.0)],  # of the team plan's eight features
)
def test_value_discovery_fires_at_the_share_of_the_plans_features_reached(
    used: int, level: float | None
) -> None:
    published = signals(run(events(account(0, plan="team"), *features(used))))

    levels = [s["level"] for s in published if s["trigger"] == "value_discovery"]
    assert (levels[-1] if levels else None) == level


def test_value_discovery_levels_rise_and_name_the_unused_features() -> None:
    published = signals(run(events(account(0, plan="team"), *features(8))))

    assert [(s["trigger"], s["level"]) for s in published] == [
        ("value_discovery", 0.75),
        ("value_discovery", 1.0),
    ]
    assert published[0]["evidence"] == {
        "plan": "team",
        "features_used": 6,
        "plan_features": 8,
        "share": 0.75,
        "unused": sorted(TEAM_FEATURES[6:]),
        "window_days": 90,
    }
    assert published[0]["expansion_type"] == "tier"


def test_value_discovery_never_fires_for_a_plan_without_a_list() -> None:
    custom = [feature(1 + n / 100, "u1", f"f{n}") for n in range(10)]

    assert fired(run(events(account(0, plan="custom"), *custom))) == []


def test_value_discovery_counts_features_used_in_90_days() -> None:
    early = features(4, day=0)
    late = [feature(95 + n / 100, "u1", name) for n, name in enumerate(TEAM_FEATURES[4:8])]
    keep_adopting = [feature(95.5, "u1", name) for name in TEAM_FEATURES[4:7]]

    # on day 95 the first four fell out of the window: 4 of 8
    assert [
        s for s in signals(run(events(account(0, plan="team"), *early, *late, *keep_adopting)))
    ] == []


# -- renewal_window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("renewal", "health", "fires"),
    [
        ("2024-06-30", 80, True),  # 60 days before, given as a date
        ("2024-06-30", 79, False),
        ("2024-06-30T00:00:01Z", 80, False),  # 60 days and a second before
        ("2024-05-01T00:00:00Z", 95, True),  # the day itself, not past it
        ("2024-04-30T23:59:59Z", 95, False),  # past it
        ("2024-06-30", None, False),  # health unknown
    ],
)
def test_renewal_window(renewal: str, health: float | None, fires: bool) -> None:
    update = account(0, renewal_date=renewal, health_score=health)

    assert fired(run(events(update))) == ([("renewal_window", 1.0, "in_app")] if fires else [])


def test_renewal_window_publishes_once_per_renewal_date_and_a_new_date_rearms_it() -> None:
    outcomes = run(
        events(
            account(0, renewal_date="2024-06-15"),
            active(20, "u1"),  # cooldown over, same date: not again
            account(21, renewal_date="2024-07-10"),  # a new date
            active(22, "u1"),
        )
    )

    assert [(s["trigger"], s["evidence"]["renewal_date"]) for s in signals(outcomes)] == [
        ("renewal_window", "2024-06-15T00:00:00.000Z"),
        ("renewal_window", "2024-07-10T00:00:00.000Z"),
    ]


def test_a_renewal_window_gated_is_tried_again_on_later_events() -> None:
    outcomes = run(
        events(
            account(0, renewal_date="2024-06-15", nps=3),
            active(1, "u1"),
            account(2, nps=9),
        )
    )

    assert reasons(outcomes) == [("renewal_window", 1.0, "gated_nps")]
    assert [brief(s) for s in signals(outcomes)] == [("renewal_window", 1.0, None)]
    assert outcomes[2].signals[0]["source_event_id"] == "e3"


# -- the customer's own ask, and min_route -----------------------------------------------------


def test_an_expansion_inquiry_goes_to_a_csm_and_a_qbr_need_to_sales() -> None:
    inquiry = run(events(account(0), ask(1)))
    qbr = run(events(account(0), ask(1, "qbr_unmet_need")))

    assert fired(inquiry) == [("expansion_inquiry", 1.0, "csm")]  # estimate 150: in_app
    assert fired(qbr) == [("qbr_outcome", 1.0, "sales")]
    assert signals(inquiry)[0]["evidence"] == {
        "kind": "expansion_inquiry",
        "detail": {"team": "finance"},
    }


def test_min_route_is_a_rule_per_trigger() -> None:
    rules = parse({"defaults": {"triggers": {"relationship_change": {"min_route": "sales"}}}})

    assert fired(run(events(account(0), champion(1)), rules=rules)) == [
        ("relationship_change", 1.0, "sales")
    ]


def test_min_route_never_lowers_a_route() -> None:
    assert fired(run(events(account(0, mrr=20_000), ask(1)))) == [
        ("expansion_inquiry", 1.0, "sales")
    ]


def test_an_inquiry_outranks_a_new_department_but_not_seat_saturation() -> None:
    outcomes = run(events(account(0), funding(1), ask(2)))

    first, second = signals(outcomes)
    assert (second["trigger"], second["supersedes"]) == ("expansion_inquiry", first["signal_id"])


# -- gates -----------------------------------------------------------------------------------


def seats_with_active(seated: int, active_users: int) -> list[dict[str, Any]]:
    """Seats assigned on day 0; by day 35 only `active_users` of them were active lately."""
    return [
        *[seat(0, f"u{n}") for n in range(seated)],
        *[active(day, f"u{n}") for day in (20, 30, 35) for n in range(active_users)],
    ]


@pytest.mark.parametrize(("active_users", "gated"), [(5, True), (6, False)])
def test_the_utilization_gate(active_users: int, gated: bool) -> None:
    outcomes = run(events(account(0), *seats_with_active(10, active_users), champion(35.5)))

    if gated:
        assert reasons(outcomes) == [("relationship_change", 1.0, "gated_low_utilization")]
        assert decisions(outcomes)[0]["detail"] == {
            "active_users": 5,
            "seats_in_use": 10,
            "utilization": 0.5,
            "min_utilization": 0.6,
            "window_days": 30,
        }
    else:
        assert fired(outcomes) == [("relationship_change", 1.0, "in_app")]


def test_the_utilization_gate_is_per_segment_and_unknown_without_seats() -> None:
    mid_market = account(0, segment="mid_market")
    outcomes = run(events(mid_market, *seats_with_active(10, 6), champion(35.5)))

    assert reasons(outcomes) == [("relationship_change", 1.0, "gated_low_utilization")]  # 0.70
    assert fired(run(events(account(0), champion(35.5)))) != []  # no seats in use: passes


@pytest.mark.parametrize(("used", "gated"), [(2, True), (3, False)])
def test_the_adoption_gate(used: int, gated: bool) -> None:
    outcomes = run(events(account(0), *features(used), champion(2)))

    assert [r for _, _, r in reasons(outcomes)] == (["gated_low_adoption"] if gated else [])
    if gated:
        assert decisions(outcomes)[0]["detail"] == {
            "features_used": 2,
            "min_features_used": 3,
            "window_days": 30,
        }


def test_the_adoption_gate_counts_30_days_and_passes_an_account_that_never_reports() -> None:
    old = features(5, day=0)
    assert [r for _, _, r in reasons(run(events(account(0), *old, champion(31))))] == [
        "gated_low_adoption"
    ]
    assert fired(run(events(account(0), champion(31)))) != []


@pytest.mark.parametrize(
    ("before", "recent", "gated"), [(1, 2, True), (2, 2, False), (0, 0, False)]
)
def test_the_support_gate(before: int, recent: int, gated: bool) -> None:
    tickets = [ticket(10 + n / 10) for n in range(before)] + [
        ticket(40 + n / 10) for n in range(recent)
    ]

    outcomes = run(events(account(0), *tickets, champion(59.5)))

    assert [r for _, _, r in reasons(outcomes)] == (["gated_support_rising"] if gated else [])
    if gated:
        assert decisions(outcomes)[0]["detail"] == {
            "tickets_recent": 2,
            "tickets_before": 1,
            "window_days": 30,
        }


@pytest.mark.parametrize(
    ("segment", "nps", "gated"),
    [("smb", 6.9, True), ("smb", 7, False), ("enterprise", 7.9, True), ("enterprise", 8, False)],
)
def test_the_nps_gate(segment: str, nps: float, gated: bool) -> None:
    outcomes = run(
        events(
            account(-90, segment=segment, activated_at="2023-01-01T00:00:00Z", nps=nps), champion(1)
        )
    )

    assert [r for _, _, r in reasons(outcomes)] == (["gated_nps"] if gated else [])


def test_an_unknown_nps_passes_and_gates_are_checked_in_the_contracts_order() -> None:
    assert fired(run(events(account(0), champion(1)))) != []
    # low adoption and a detractor: adoption comes first
    outcomes = run(events(account(0, nps=2), *features(1), champion(2)))
    assert [r for _, _, r in reasons(outcomes)] == ["gated_low_adoption"]


# -- stalled_pql -------------------------------------------------------------------------------


def test_an_in_app_prompt_unanswered_for_30_days_goes_to_a_csm() -> None:
    outcomes = run(
        events(account(0), champion(1), active(30.9, "u1"), active(31, "u1"), active(40, "u1"))
    )

    first, stalled = signals(outcomes)
    assert first["route"] == "in_app"
    assert outcomes[3].signals == [stalled]  # the first event at or after day 31
    assert (stalled["trigger"], stalled["route"], stalled["supersedes"]) == (
        "stalled_pql",
        "csm",
        first["signal_id"],
    )
    assert stalled["expansion_type"] == "seat"  # the stalled signal's
    assert stalled["evidence"] == {
        "stalled_signal_id": first["signal_id"],
        "stalled_trigger": "relationship_change",
        "stalled_level": 1.0,
        "stalled_expansion_type": "seat",
        "stalled_detected_at": first["detected_at"],
        "days_unanswered": 30.0,
    }


def test_stalled_pql_keeps_the_co_signals_and_ranks_as_what_it_escalated() -> None:
    outcomes = run(events(account(0), champion(1), funding(2), active(20, "u1"), funding(31)))

    first, stalled = signals(outcomes)
    # the co-signal joined the primary after it was published
    assert stalled["co_signals"] == ["company_growth"] == outcomes[2].serving["co_signals"]
    # company_growth on the same event is decided after it, against it
    assert reasons(outcomes)[-1] == ("company_growth", 1.0, "collision")
    assert outcomes[4].decisions[-1]["detail"] == {"primary_signal_id": stalled["signal_id"]}


def test_a_self_serve_conversion_answers_the_prompt_and_nothing_stalls() -> None:
    outcomes = run(
        events(
            account(0, seat_limit=10, mrr=1000),
            champion(1),
            account(10, seat_limit=15, mrr=1200),
            active(31, "u1"),
        )
    )

    [answer] = outcomes[2].answers
    assert (answer.stage, answer.via, answer.expansion_mrr) == ("won", "self_serve", 200.0)
    assert answer.signal.signal_id == signals(outcomes)[0]["signal_id"]
    assert [s["trigger"] for s in signals(outcomes)] == ["relationship_change"]


def test_an_outcome_answers_the_prompt_and_nothing_stalls() -> None:
    outcomes = run(events(account(0), champion(1), outcome(5, "opportunity"), active(31, "u1")))

    assert [s["trigger"] for s in signals(outcomes)] == ["relationship_change"]
    assert [a.stage for a in outcomes[2].answers] == ["opportunity"]


def test_a_gated_stall_is_logged_once_and_not_tried_again() -> None:
    outcomes = run(
        events(
            account(0),
            champion(1),
            account(20, health_score=40),
            active(31, "u1"),
            account(40, health_score=95),
            active(41, "u1"),
        )
    )

    assert reasons(outcomes) == [("stalled_pql", 1.0, "gated_health")]
    assert [s["trigger"] for s in signals(outcomes)] == ["relationship_change"]


def test_a_csm_routed_primary_never_stalls() -> None:
    outcomes = run(events(account(0, mrr=5000), champion(1), active(40, "u1")))

    assert [s["trigger"] for s in signals(outcomes)] == ["relationship_change"]


# -- outcomes --------------------------------------------------------------------------------------


def test_outcomes_answer_the_signal_they_name_once_per_stage() -> None:
    base = run(events(account(0), champion(1), funding(9)))
    first, second = signals(base)
    outcomes = run(
        events(
            account(0),
            champion(1),
            funding(9),
            outcome(10, "opportunity", first["signal_id"]),
            outcome(11, "opportunity", first["signal_id"]),  # a stage it already has
            outcome(12, "won", signal_id=None, expansion_mrr=300),  # the current primary
            outcome(13, "lost", "not-ours"),
        )
    )

    assert [(a.signal.signal_id, a.stage, a.via) for o in outcomes for a in o.answers] == [
        (first["signal_id"], "opportunity", "reported"),
        (second["signal_id"], "won", "reported"),
    ]
    assert [o.unmatched for o in outcomes[3:]] == [False, False, False, True]
    assert outcomes[5].answers[0].expansion_mrr == 300


def test_a_late_outcome_still_answers() -> None:
    outcomes = run(events(account(0), champion(1), active(5, "u1"), outcome(2, "rejected")))

    assert outcomes[3].late
    assert [a.stage for a in outcomes[3].answers] == ["rejected"]


@pytest.mark.parametrize(
    ("before", "after", "converts"),
    [
        ({"seat_limit": 10}, {"seat_limit": 12}, True),
        ({"seat_limit": 10}, {"seat_limit": 0}, True),  # unlimited
        ({"seat_limit": 0}, {"seat_limit": 10}, False),  # from unlimited to a number
        ({"seat_limit": 10}, {"seat_limit": 8}, False),
        ({}, {"seat_limit": 10}, False),  # sent for the first time
        ({"usage_limits": {"api": 10}}, {"usage_limits": {"api": 20}}, True),
        ({"usage_limits": {"api": 10}}, {"usage_limits": {"api": 10, "rows": 5}}, False),
        ({"plan": "team"}, {"plan": "business"}, True),
        ({"plan": "team"}, {"plan": "team"}, False),
    ],
)
def test_self_serve_conversions(
    before: dict[str, Any], after: dict[str, Any], converts: bool
) -> None:
    outcomes = run(events(account(0, **before), champion(1), account(2, **after)))

    assert [(a.stage, a.via) for a in outcomes[2].answers] == (
        [("won", "self_serve")] if converts else []
    )


def test_detection_with_the_v2_events_is_deterministic() -> None:
    history = [
        account(0, plan="team", renewal_date="2024-06-20", nps=9),
        *workflow_weeks(4),
        *features(8),
        ticket(3),
        ask(5),
        champion(6),
        active(40, "u1"),
    ]

    assert signals(run(events(*history))) == signals(run(events(*history)))

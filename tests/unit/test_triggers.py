"""The eight triggers, each with its threshold just met and just missed (contract section 4)."""

from __future__ import annotations

from typing import Any

import pytest
from scenario import (
    SHIPPED_RULES,
    account,
    active,
    at,
    brief,
    events,
    fold,
    gate_hit,
    invite,
    run,
    seat,
    signals,
    usage,
)

from streams.domain.state import AccountState
from streams.domain.triggers import CATALOG, Fired, evaluate
from streams.rules import Rules, parse


def check(trigger: str, *objs: dict[str, Any], rules: Rules = SHIPPED_RULES) -> Fired | None:
    """Fold the events into a fresh account and check one trigger at the last of them."""
    evs = events(*objs)
    state = fold(evs)
    rule = getattr(rules.for_segment(state.segment).triggers, trigger)
    firing = CATALOG[trigger].check(state, evs[-1], rule)
    return None if firing is None else Fired(trigger, *firing)


def stamp(day: float) -> str:
    """The evidence's time format: at(day) with milliseconds."""
    return at(day).replace("Z", ".000Z")


def external(day: float, kind: str) -> dict[str, Any]:
    return {"type": "external_signal", "day": day, "properties": {"kind": kind}}


# -- usage_ceiling ----------------------------------------------------------------------

LIMITED = account(0, usage_limits={"api_calls": 1000})


def test_usage_ceiling_fires_at_80_percent_of_the_monthly_limit() -> None:
    fired = check("usage_ceiling", LIMITED, usage(1, 500), usage(1, 300))

    assert fired == Fired(
        "usage_ceiling",
        0.8,
        {
            "meter": "api_calls",
            "usage": 800,
            "limit": 1000,
            "ratio": 0.8,
            "month": "2024-05",
            "days_elapsed": 1.0,
            "basis": "usage",
        },
    )


def test_usage_ceiling_does_not_fire_just_below_80_percent() -> None:
    assert check("usage_ceiling", LIMITED, usage(1, 799.9)) is None


def test_usage_ceiling_fires_level_1_at_the_limit() -> None:
    fired = check("usage_ceiling", LIMITED, usage(1, 1000))

    assert fired is not None
    assert (fired.level, fired.evidence["ratio"]) == (1.0, 1.0)


def test_usage_ceiling_stays_at_level_08_just_below_the_limit() -> None:
    fired = check("usage_ceiling", LIMITED, usage(1, 999))

    assert fired is not None
    assert fired.level == 0.8


def test_usage_ceiling_fires_when_the_run_rate_reaches_the_limit_in_14_days() -> None:
    # 700 in the first 7 days is 100 a day: the other 1400 take exactly 14 days
    fired = check("usage_ceiling", account(0, usage_limits={"api_calls": 2100}), usage(7, 700))

    assert fired == Fired(
        "usage_ceiling",
        0.8,
        {
            "meter": "api_calls",
            "usage": 700,
            "limit": 2100,
            "ratio": 0.3333,
            "month": "2024-05",
            "days_elapsed": 7.0,
            "basis": "projection",
            "projected_days_to_limit": 14.0,
        },
    )


def test_usage_ceiling_projection_does_not_fire_when_the_month_resets_first() -> None:
    # May has 31 days: on day 24, 2400 used is 100 a day and usage resets in 7 days.
    # A limit of 3200 is 8 days away (within 14, but after the reset); 3100 is 7 days away.
    limits = {"api_calls": 3200}
    assert check("usage_ceiling", account(0, usage_limits=limits), usage(24, 2400)) is None
    fired = check("usage_ceiling", account(0, usage_limits={"api_calls": 3100}), usage(24, 2400))
    assert fired is not None and fired.evidence["projected_days_to_limit"] == 7.0


def test_usage_ceiling_does_not_fire_when_the_run_rate_needs_more_than_14_days() -> None:
    assert (
        check("usage_ceiling", account(0, usage_limits={"api_calls": 2100}), usage(7, 699)) is None
    )


def test_usage_ceiling_projection_needs_7_days_of_the_month() -> None:
    # 700 of 1000 in 6.99 days would reach the limit in 3 days
    assert check("usage_ceiling", LIMITED, usage(6.99, 700)) is None
    assert check("usage_ceiling", LIMITED, usage(6.99, 700), usage(7, 0)) is not None


def test_usage_ceiling_projection_fires_on_any_later_event_once_the_run_rate_counts() -> None:
    # 700 of 1000 by day 3 does not project yet; on day 7 a user's activity (no new usage)
    # is the first event after which the run rate counts: 100 a day, the limit in 3 days
    outcomes = run(events(LIMITED, usage(3, 700), active(5, "u1"), active(7, "u1")))

    assert [brief(signal) for signal in signals(outcomes)] == [("usage_ceiling", 0.8, None)]
    assert outcomes[-1].signals[0]["evidence"]["basis"] == "projection"
    assert outcomes[-1].signals[0]["evidence"]["projected_days_to_limit"] == 3.0


def test_usage_ceiling_counts_only_the_current_month() -> None:
    # day 31 is 1 June: May's 900 are gone
    assert check("usage_ceiling", LIMITED, usage(30, 900), usage(31, 10)) is None


def test_usage_ceiling_ignores_a_meter_without_a_limit() -> None:
    assert check("usage_ceiling", LIMITED, usage(1, 5000, meter="storage_gb")) is None


def test_usage_ceiling_reports_the_meter_with_the_highest_level() -> None:
    fired = check(
        "usage_ceiling",
        account(0, usage_limits={"api_calls": 1000, "storage_gb": 10}),
        usage(1, 850),
        usage(1, 10, meter="storage_gb"),
    )

    assert fired is not None
    assert (fired.level, fired.evidence["meter"]) == (1.0, "storage_gb")


# -- seat_saturation ----------------------------------------------------------------


def seats(count: int, day: float = 0) -> list[dict[str, Any]]:
    return [seat(day, f"u{n}") for n in range(count)]


def test_seat_saturation_fires_08_once_seats_stayed_at_80_percent_for_14_days() -> None:
    fired = check("seat_saturation", account(0, seat_limit=10), *seats(8), active(14, "u0"))

    assert fired == Fired(
        "seat_saturation",
        0.8,
        {
            "seats_in_use": 8,
            "seat_limit": 10,
            "ratio": 0.8,
            "saturated_since": stamp(0),
            "sustained_days": 14.0,
        },
    )


def test_seat_saturation_does_not_fire_08_before_14_days() -> None:
    assert (
        check("seat_saturation", account(0, seat_limit=10), *seats(8), active(13.99, "u0")) is None
    )


def test_seat_saturation_does_not_fire_below_80_percent() -> None:
    assert check("seat_saturation", account(0, seat_limit=10), *seats(7), active(60, "u0")) is None


def test_seat_saturation_fires_09_once_saturated_for_14_days() -> None:
    fired = check(
        "seat_saturation", account(0, seat_limit=10), *seats(8), seat(10, "u8"), active(14, "u0")
    )

    assert fired is not None
    assert (fired.level, fired.evidence["seats_in_use"], fired.evidence["sustained_days"]) == (
        0.9,
        9,
        14.0,
    )


def test_seat_saturation_fires_10_at_once() -> None:
    fired = check("seat_saturation", account(0, seat_limit=10), *seats(10))

    assert fired == Fired(
        "seat_saturation",
        1.0,
        {
            "seats_in_use": 10,
            "seat_limit": 10,
            "ratio": 1.0,
            "saturated_since": stamp(0),
            "sustained_days": 0.0,
        },
    )


def test_seat_saturation_fires_10_over_the_limit() -> None:
    fired = check("seat_saturation", account(0, seat_limit=10), *seats(12))

    assert fired is not None
    assert (fired.level, fired.evidence["ratio"]) == (1.0, 1.2)


def test_seat_saturation_sustain_starts_again_after_a_dip_below_80_percent() -> None:
    dip = [seat(5, "u0", removed=True), seat(6, "u0")]

    assert (
        check("seat_saturation", account(0, seat_limit=10), *seats(8), *dip, active(19.9, "u1"))
        is None
    )
    assert (
        check("seat_saturation", account(0, seat_limit=10), *seats(8), *dip, active(20, "u1"))
        is not None
    )


@pytest.mark.parametrize("limit", [{"seat_limit": 0}, {}], ids=["zero", "unknown"])
def test_seat_saturation_never_fires_without_a_seat_limit(limit: dict[str, int]) -> None:
    assert check("seat_saturation", account(0, **limit), *seats(50), active(30, "u0")) is None


# -- gated_feature_demand -------------------------------------------------------------


def test_gated_feature_demand_fires_on_3_distinct_features_in_14_days() -> None:
    fired = check(
        "gated_feature_demand",
        gate_hit(0, "u1", "sso"),
        gate_hit(6, "u1", "audit_log"),
        gate_hit(13, "u1", "api_access"),
    )

    assert fired == Fired(
        "gated_feature_demand",
        1.0,
        {
            "distinct_features": 3,
            "features": ["api_access", "audit_log", "sso"],
            "distinct_window_days": 14,
            "gate_hits": 3,
            "gate_users": 1,
            "hits_window_days": 30,
            "basis": "distinct_features",
        },
    )


def test_gated_feature_demand_does_not_fire_on_2_distinct_features() -> None:
    hits = [gate_hit(day, "u1", "sso") for day in range(5)] + [gate_hit(5, "u2", "audit_log")]

    assert check("gated_feature_demand", *hits) is None


def test_gated_feature_demand_forgets_a_feature_hit_14_days_ago() -> None:
    assert (
        check(
            "gated_feature_demand",
            gate_hit(0, "u1", "sso"),
            gate_hit(6, "u1", "audit_log"),
            gate_hit(14, "u1", "api_access"),
        )
        is None
    )


def test_gated_feature_demand_fires_on_10_hits_by_2_users_in_30_days() -> None:
    hits = [gate_hit(day, "u1", "sso") for day in range(0, 27, 3)] + [gate_hit(29, "u2", "sso")]

    fired = check("gated_feature_demand", *hits)

    assert fired == Fired(
        "gated_feature_demand",
        1.0,
        {
            "distinct_features": 1,
            "features": ["sso"],
            "distinct_window_days": 14,
            "gate_hits": 10,
            "gate_users": 2,
            "hits_window_days": 30,
            "basis": "gate_hits",
        },
    )


def test_gated_feature_demand_does_not_fire_on_9_hits_by_2_users() -> None:
    hits = [gate_hit(day, "u1", "sso") for day in range(8)] + [gate_hit(8, "u2", "sso")]

    assert check("gated_feature_demand", *hits) is None


def test_gated_feature_demand_does_not_fire_on_10_hits_by_one_user() -> None:
    hits = [gate_hit(day, "u1", "sso") for day in range(10)]

    assert check("gated_feature_demand", *hits) is None


def test_gated_feature_demand_does_not_count_hits_older_than_30_days() -> None:
    hits = [gate_hit(day, "u1", "sso") for day in range(0, 27, 3)] + [gate_hit(30, "u2", "sso")]

    assert check("gated_feature_demand", *hits) is None


# -- invite_surge ---------------------------------------------------------------------


def test_invite_surge_fires_on_5_invites_in_30_days() -> None:
    fired = check("invite_surge", invite(0), invite(10), invite(20), invite(29), invite(29.5))

    assert fired == Fired("invite_surge", 1.0, {"invites": 5, "window_days": 30})


def test_invite_surge_does_not_fire_on_4_invites() -> None:
    assert check("invite_surge", invite(0), invite(1), invite(2), invite(3)) is None


def test_invite_surge_does_not_count_invites_older_than_30_days() -> None:
    assert check("invite_surge", invite(0), invite(10), invite(20), invite(29), invite(30)) is None


def test_invite_surge_counts_the_longest_window_the_rules_allow() -> None:
    rules = parse({"defaults": {"triggers": {"invite_surge": {"window_days": 60}}}})
    invites = [invite(0), *[invite(59 + n / 10) for n in range(4)]]

    assert check("invite_surge", *invites, rules=rules) == Fired(
        "invite_surge", 1.0, {"invites": 5, "window_days": 60}
    )


def test_invite_surge_counts_invites_from_any_user() -> None:
    fired = check("invite_surge", *[invite(n, f"u{n}") for n in range(5)])

    assert fired == Fired("invite_surge", 1.0, {"invites": 5, "window_days": 30})


# -- new_department ---------------------------------------------------------------------


def test_new_department_fires_on_2_users_of_a_department_first_seen_in_14_days() -> None:
    fired = check(
        "new_department",
        active(0, "e1", "eng"),
        active(30, "s1", "sales"),
        active(43, "s2", "sales"),
    )

    assert fired == Fired(
        "new_department",
        1.0,
        {
            "department": "sales",
            "active_users": 2,
            "first_seen": stamp(30),
            "departments_known_since": stamp(0),
            "window_days": 14,
        },
    )


def test_new_department_does_not_fire_with_departments_known_under_30_days() -> None:
    assert (
        check(
            "new_department",
            active(0, "e1", "eng"),
            active(29, "s1", "sales"),
            active(29.9, "s2", "sales"),
        )
        is None
    )


def test_new_department_does_not_fire_on_one_user() -> None:
    assert (
        check(
            "new_department",
            active(0, "e1", "eng"),
            active(30, "s1", "sales"),
            active(31, "s1", "sales"),
        )
        is None
    )


def test_new_department_does_not_fire_for_a_department_first_seen_14_days_ago() -> None:
    assert (
        check(
            "new_department",
            active(0, "e1", "eng"),
            active(30, "s1", "sales"),
            active(44, "s2", "sales"),
        )
        is None
    )


def test_new_department_counts_users_named_on_seat_assignments() -> None:
    fired = check(
        "new_department", seat(0, "e1", "eng"), seat(31, "s1", "sales"), seat(31, "s2", "sales")
    )

    assert fired is not None
    assert fired.evidence["department"] == "sales"


# -- power_user_emergence ---------------------------------------------------------------


def test_power_user_emergence_fires_on_a_user_active_twice_the_mean_on_10_days() -> None:
    fired = check(
        "power_user_emergence",
        *[active(day, "power") for day in range(10)],
        active(9, "u2"),
        active(9, "u3"),
    )

    assert fired == Fired(
        "power_user_emergence",
        1.0,
        {
            "user_id": "power",
            "active_days": 10,
            "mean_active_days": 4.0,
            "active_users": 3,
            "window_days": 30,
        },
    )


def test_power_user_emergence_needs_10_active_days() -> None:
    assert (
        check(
            "power_user_emergence",
            *[active(day, "power") for day in range(9)],
            active(8, "u2"),
            active(8, "u3"),
        )
        is None
    )


def test_power_user_emergence_needs_twice_the_mean() -> None:
    # 10 + 5 + 5 active days: the mean is 6.67 and twice it 13.3
    assert (
        check(
            "power_user_emergence",
            *[active(day, "power") for day in range(10)],
            *[active(day, "u2") for day in range(5)],
            *[active(day, "u3") for day in range(5, 10)],
        )
        is None
    )


def test_power_user_emergence_needs_3_active_users() -> None:
    assert (
        check(
            "power_user_emergence", *[active(day, "power") for day in range(20)], active(19, "u2")
        )
        is None
    )


def test_power_user_emergence_counts_active_days_in_the_last_30_days_only() -> None:
    # days 10..19 fall in the 30 days ending on day 39, only 11..19 in those ending on day 40
    history = [active(day, "power") for day in range(20)]

    assert check("power_user_emergence", *history, active(39, "u2"), active(39, "u3")) is not None
    assert check("power_user_emergence", *history, active(40, "u2"), active(40, "u3")) is None


# -- relationship_change and company_growth ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "trigger"),
    [
        ("champion_promoted", "relationship_change"),
        ("exec_sponsor_added", "relationship_change"),
        ("funding_round", "company_growth"),
        ("headcount_growth", "company_growth"),
    ],
)
def test_external_signals_fire_the_trigger_of_their_kind(kind: str, trigger: str) -> None:
    fired = check(
        trigger,
        {"type": "external_signal", "day": 0, "properties": {"kind": kind, "detail": {"n": 1}}},
    )

    assert fired == Fired(trigger, 1.0, {"kind": kind, "detail": {"n": 1}})


@pytest.mark.parametrize(
    ("kind", "trigger"),
    [("funding_round", "relationship_change"), ("champion_promoted", "company_growth")],
)
def test_external_signals_do_not_fire_the_other_trigger(kind: str, trigger: str) -> None:
    assert check(trigger, external(0, kind)) is None


def test_external_triggers_fire_only_on_the_external_event_itself() -> None:
    assert check("company_growth", external(0, "funding_round"), active(0.1, "u1")) is None


def test_external_trigger_kinds_come_from_the_rules() -> None:
    rules = parse(
        {"defaults": {"triggers": {"relationship_change": {"kinds": ["champion_promoted"]}}}}
    )

    assert check("relationship_change", external(0, "exec_sponsor_added"), rules=rules) is None
    assert check("relationship_change", external(0, "champion_promoted"), rules=rules) is not None


# -- evaluate ---------------------------------------------------------------------------


def test_evaluate_lists_every_trigger_that_holds_highest_priority_first() -> None:
    evs = events(
        account(0, seat_limit=5),
        *[invite(0, "u1", f"g{n}") for n in range(5)],
        *seats(5, day=1),
    )
    state = fold(evs)

    fired = evaluate(state, evs[-1], SHIPPED_RULES.for_segment(None))

    assert [(f.trigger, f.level) for f in fired] == [
        ("seat_saturation", 1.0),
        ("invite_surge", 1.0),
    ]


def test_evaluate_skips_a_disabled_trigger() -> None:
    rules = parse({"defaults": {"triggers": {"invite_surge": {"enabled": False}}}})
    evs = events(*[invite(0, "u1", f"g{n}") for n in range(5)])

    assert evaluate(fold(evs), evs[-1], rules.for_segment(None)) == []


def fired_per_event(*objs: dict[str, Any]) -> list[list[str]]:
    """Fold the events one at a time into a fresh account, evaluating the triggers after
    each as the detector does (reusing what nothing changed)."""
    evs = events(*objs)
    state, rules = AccountState(evs[0].account_id), SHIPPED_RULES.for_segment(None)
    per_event = []
    for event in evs:
        state.apply(event, saturation_floor=0.8)
        per_event.append([f.trigger for f in evaluate(state, event, rules)])
    return per_event


@pytest.mark.parametrize(
    ("trigger", "objs"),
    [
        # 8 of 10 seats since day 0.5: sustained 14 days at 14.5
        ("seat_saturation", (account(0, seat_limit=10), *seats(8, 0.5), active(14.4, "u0"))),
        # departments known since day 0.5: for 30 days at 30.5
        (
            "new_department",
            (
                active(0.5, "e1", "eng"),
                active(30.2, "s1", "sales"),
                active(30.3, "s2", "sales"),
                active(30.4, "e1", "eng"),
            ),
        ),
        # renewal at 60.5: its window opens at 0.5
        (
            "renewal_window",
            (account(0, renewal_date="2024-06-30T12:00:00Z", health_score=90), active(0.4, "u1")),
        ),
    ],
)
def test_a_trigger_reading_the_clock_is_checked_again_the_same_day_when_its_time_comes(
    trigger: str, objs: tuple[dict[str, Any], ...]
) -> None:
    # the last event again 0.2 days later, on the same day: nothing else changed
    later = {**objs[-1], "day": objs[-1]["day"] + 0.2}

    *_, before, after = fired_per_event(*objs, later)

    assert (trigger in before, trigger in after) == (False, True)


def test_seat_saturation_sees_a_seat_assigned_later_the_same_day() -> None:
    *_, nine, ten = fired_per_event(account(0, seat_limit=10), *seats(9, 1), seat(1.2, "u9"))

    assert ("seat_saturation" in nine, "seat_saturation" in ten) == (False, True)

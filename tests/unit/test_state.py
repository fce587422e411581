"""Per-account state: seats, monthly usage, departments, activity windows, serialization."""

from __future__ import annotations

from pathlib import Path

import orjson
from scenario import (
    BASE,
    account,
    active,
    events,
    feature,
    fold,
    gate_hit,
    invite,
    run,
    seat,
    signals,
    ticket,
    usage,
    workflow,
)

from streams.clock import DAY, day_of, month_of
from streams.domain.state import HISTORY_DAYS, AccountState, TriggerMemory
from streams.events import Event

DAY0 = day_of(BASE.timestamp())
MAY = month_of(BASE.timestamp())
JUNE = MAY + 1


def test_seats_in_use_count_each_user_once() -> None:
    state = fold(events(seat(0, "u1"), seat(0, "u2"), seat(1, "u1"), seat(2, "u3")))

    assert state.seats == {"u1", "u2", "u3"}


def test_a_removed_seat_is_no_longer_in_use() -> None:
    state = fold(events(seat(0, "u1"), seat(0, "u2"), seat(1, "u1", removed=True)))

    assert state.seats == {"u2"}


def test_removing_a_seat_never_assigned_changes_nothing() -> None:
    state = fold(events(seat(0, "u1"), seat(1, "ghost", removed=True)))

    assert state.seats == {"u1"}


def test_a_seat_assigned_again_after_removal_is_in_use() -> None:
    state = fold(events(seat(0, "u1"), seat(1, "u1", removed=True), seat(2, "u1")))

    assert state.seats == {"u1"}


def test_usage_is_summed_per_meter_for_the_month() -> None:
    state = fold(
        events(usage(0, 100), usage(3, 250.5), usage(4, 7, meter="storage_gb"), usage(30, 1))
    )

    assert state.usage == {"api_calls": [MAY, 351.5], "storage_gb": [MAY, 7]}


def test_usage_starts_again_in_a_new_utc_calendar_month() -> None:
    # day 31 is 2024-06-01T00:00:00Z
    state = fold(events(usage(0, 100), usage(30.99, 50), usage(31, 5)))

    assert state.usage == {"api_calls": [JUNE, 5]}


def test_the_calendar_month_is_the_utc_month_of_event_time() -> None:
    # 22:30 on 31 May at -02:00 is 00:30 on 1 June in UTC
    [may, june] = events(
        {
            "type": "usage_recorded",
            "timestamp": "2024-05-31T20:00:00-02:00",
            "properties": {"meter": "api_calls", "quantity": 10},
        },
        {
            "type": "usage_recorded",
            "timestamp": "2024-05-31T22:30:00-02:00",
            "properties": {"meter": "api_calls", "quantity": 1},
        },
    )

    state = fold([may, june])

    assert state.usage == {"api_calls": [JUNE, 1]}


def test_usage_of_a_month_already_closed_is_not_added_to_the_current_month() -> None:
    state = fold(events(usage(31, 5), usage(30.99, 500)))

    assert state.usage == {"api_calls": [JUNE, 5]}


def test_now_is_the_latest_event_time_and_an_older_event_does_not_move_it_back() -> None:
    state = fold(events(active(5, "u1"), active(2, "u2")))

    assert state.now == BASE.timestamp() + 5 * 86_400


def test_a_department_is_remembered_from_the_first_time_it_is_seen() -> None:
    state = fold(events(active(3, "u1", "eng"), seat(5, "u2", "sales"), active(9, "u3", "eng")))

    assert state.departments == {
        "eng": BASE.timestamp() + 3 * 86_400,
        "sales": BASE.timestamp() + 5 * 86_400,
    }


def test_an_older_event_moves_a_departments_first_sighting_back() -> None:
    state = fold(events(active(3, "u1", "eng"), active(2.5, "u2", "eng")))

    assert state.departments == {"eng": BASE.timestamp() + 2.5 * 86_400}


def test_a_users_department_is_the_latest_one_named() -> None:
    state = fold(events(active(0, "u1", "eng"), active(1, "u1"), active(2, "u1", "sales")))

    assert state.users["u1"][2] == "sales"


def test_active_users_are_distinct_user_ids_on_any_event_in_the_window() -> None:
    state = fold(
        events(
            active(0, "u1"),
            active(0.5, "u1"),
            invite(1, "u2"),
            gate_hit(2, "u3", "sso"),
            seat(3, "u4"),
            usage(4, 1),  # no user
            account(5),  # no user
        )
    )

    assert state.active_users(DAY0, DAY0 + 5) == 4
    assert state.active_users(DAY0 + 1, DAY0 + 2) == 2
    assert state.active_users(DAY0 + 4, DAY0 + 5) == 0


def test_active_days_are_utc_dates_counted_once_each() -> None:
    state = fold(
        events(
            active(0, "u1"), active(0.9, "u1"), active(1.1, "u1"), active(4, "u1"), active(6, "u2")
        )
    )

    record = state.users["u1"]
    assert state.active_days(record, DAY0, DAY0 + 6) == 3
    assert state.active_days(record, DAY0 + 1, DAY0 + 3) == 1
    assert state.active_days(record, DAY0 + 5, DAY0 + 6) == 0


def test_an_older_event_is_counted_on_its_own_day() -> None:
    state = fold(events(active(10, "u1"), active(3, "u1"), active(10, "u2")))

    record = state.users["u1"]
    assert state.active_days(record, DAY0 + 3, DAY0 + 3) == 1
    assert state.active_days(record, DAY0, DAY0 + 10) == 2


def test_an_activity_window_kept_current_matches_one_counted_afresh() -> None:
    # activity arriving user by user, late events included, against a window counted
    # from nothing after each event: counts, their sum and the top user agree
    arrivals = [(0, "u2"), (1, "u1"), (1, "u2"), (2, "u3"), (0.5, "u3"), (2, "u1"), (1.5, "u0")]
    state = AccountState("acme")
    expected = []
    for n, (day, user) in enumerate(arrivals):
        fold(events(active(day, user), prefix=f"a{n}"), state)
        kept = state.activity_window(30)
        fresh = AccountState.from_bytes(state.to_bytes()).activity_window(30)
        assert (kept.counts, kept.total, kept.top, kept.top_user) == (
            fresh.counts,
            fresh.total,
            fresh.top,
            fresh.top_user,
        )
        expected.append((kept.total, kept.top, kept.top_user))

    # u1, u2 and u3 each active on two days by the end; u1 is first of them by id
    assert expected[-1] == (7, 2, "u1")
    assert expected[2] == (3, 2, "u2")


def test_window_sums_count_days_ending_today() -> None:
    state = fold(events(invite(0), invite(1), invite(1), invite(29)))

    assert state.window_sum(state.invites, 30) == 4
    assert state.window_sum(state.invites, 29) == 3
    assert state.window_sum(state.invites, 1) == 1


def test_account_updated_keeps_the_fields_it_does_not_send() -> None:
    state = fold(
        events(
            account(
                0, plan="team", seat_limit=20, segment="mid_market", usage_limits={"api_calls": 100}
            ),
            {
                "type": "account_updated",
                "day": 1,
                "properties": {"seat_limit": 25, "health_score": None},
            },
        )
    )

    assert (state.plan, state.seat_limit, state.segment, state.mrr) == (
        "team",
        25,
        "mid_market",
        1000,
    )
    assert state.usage_limits == {"api_calls": 100}
    assert state.health_score is None
    assert state.activated_at == (BASE.timestamp() - 90 * 86_400)


def test_account_updated_replaces_the_usage_limits_it_sends_whole() -> None:
    state = fold(
        events(
            account(0, usage_limits={"api_calls": 100, "storage_gb": 5}),
            {"type": "account_updated", "day": 1, "properties": {"usage_limits": {"seats_api": 3}}},
        )
    )

    assert state.usage_limits == {"seats_api": 3}


def test_activated_at_null_clears_activation() -> None:
    state = fold(
        events(
            account(0), {"type": "account_updated", "day": 1, "properties": {"activated_at": None}}
        )
    )

    assert state.activated_at is None


# -- pruning and long histories ----------------------------------------------------------


def test_windows_stay_right_after_months_of_daily_activity() -> None:
    daily = [active(day, "u1") for day in range(120)]
    daily += [invite(day, "u2") for day in range(0, 120, 3)]
    state = fold(events(*daily, active(119, "u3")))

    today = state.today
    assert today == DAY0 + 119
    assert state.active_days(state.users["u1"], today - 29, today) == 30
    assert state.active_days(state.users["u1"], today - HISTORY_DAYS + 1, today) == HISTORY_DAYS
    assert state.active_users(today - 13, today) == 3
    assert state.window_sum(state.invites, 30) == 10


def test_pruning_forgets_only_what_no_window_can_reach() -> None:
    state = fold(
        events(
            active(0, "gone"),
            gate_hit(0, "gone", "sso"),
            invite(0),
            active(40, "kept"),
            active(70, "u1"),
        )
    )

    assert set(state.users) == {"kept", "u1"}
    assert state.gate_features == {}
    assert state.invites == {}
    assert state.active_days(state.users["kept"], state.today - 30, state.today) == 1


def test_pruning_forgets_the_v2_data_no_window_can_reach_and_keeps_feature_use_a_year() -> None:
    # on day 70, the last day the history no longer holds
    edge = 70 - HISTORY_DAYS
    state = fold(
        events(
            workflow(edge, "gone", "export"),
            ticket(edge),
            active(edge, "gone", "legal"),
            feature(edge, "gone", "sso"),
            workflow(edge + 1, "kept", "report"),
            ticket(edge + 1),
            active(70, "u1", "eng"),
        )
    )

    assert set(state.workflow_runs) == {"report"}
    assert set(state.workflow_days) == {DAY0 + edge + 1}
    assert set(state.workflow_users) == {"kept"}
    assert state.tickets == {DAY0 + edge + 1: 1}
    assert set(state.department_days) == {"eng"}
    assert state.features_used == {"sso": DAY0 + edge}  # windows of up to a year read it


def test_a_user_inactive_for_longer_than_the_history_is_not_active_in_any_window() -> None:
    state = fold(
        events(active(0, "u1"), active(HISTORY_DAYS + 5, "u2"), active(HISTORY_DAYS + 6, "u1"))
    )

    record = state.users["u1"]
    assert state.active_days(record, state.today - 59, state.today) == 1


def test_the_dedup_memory_holds_at_most_two_days_of_event_ids() -> None:
    # expired ids are dropped once a day, so between one and two days are held
    state = AccountState("acme")

    run(events(*[active(hour / 24, "u1") for hour in range(24 * 5)]), state=state)

    assert 25 <= len(state.seen) <= 49


# -- serialization -----------------------------------------------------------------


def busy_account() -> list[Event]:
    return events(
        account(0, seat_limit=10, usage_limits={"api_calls": 1000}, segment="mid_market"),
        *[seat(0, f"u{n}") for n in range(8)],
        active(1, "u1", "eng"),
        active(2, "u2", "sales"),
        gate_hit(3, "u1", "sso"),
        gate_hit(3, "u2", "audit_log"),
        *[invite(4 + n / 10, "u3") for n in range(5)],
        usage(5, 700),
        {"type": "external_signal", "day": 6, "properties": {"kind": "funding_round"}},
    )


def test_state_survives_a_serialization_round_trip_unchanged() -> None:
    state = AccountState("acme")
    assert signals(run(busy_account(), state=state)) != []
    assert state.primary is not None and state.triggers and state.seen

    restored = AccountState.from_bytes(state.to_bytes())

    assert restored.to_bytes() == state.to_bytes()
    for name in AccountState.__slots__:
        if name not in AccountState.TRANSIENT:
            assert getattr(restored, name) == getattr(state, name), name


def test_trigger_memory_and_the_primary_are_stored_as_compact_lists() -> None:
    state = AccountState("acme")
    run(busy_account(), state=state)
    published_at = BASE.timestamp() + 4.4 * DAY  # the fifth invite

    stored = orjson.loads(state.to_bytes())

    # both last decided on day 6: invite_surge cooling down, company_growth colliding
    day_6 = day_of(BASE.timestamp()) + 6
    assert state.triggers == {
        "invite_surge": TriggerMemory(1.0, published_at, ["1|cooldown"], decided_day=day_6),
        "company_growth": TriggerMemory(None, None, ["1|collision"], decided_day=day_6),
    }
    assert stored[20] == {
        "invite_surge": [1.0, published_at, ["1|cooldown"], None, day_6],
        "company_growth": [None, None, ["1|collision"], None, day_6],
    }
    assert state.primary is not None and state.primary.at == published_at
    # the signal, when it was published, when it was detected, and stalled_pql undecided
    assert stored[21] == [state.primary.signal, published_at, published_at, False]
    assert AccountState.summary(state.to_bytes()) == (state.now, {"invite_surge": published_at})


def test_a_restored_state_behaves_like_the_original() -> None:
    future = events(
        *[seat(20 + n, f"v{n}") for n in range(3)],
        usage(21, 200),
        invite(22, "u4"),
        active(23, "u5", "legal"),
        active(23, "u6", "legal"),
        {"type": "external_signal", "day": 24, "properties": {"kind": "champion_promoted"}},
        account(25, seat_limit=12),
        prefix="f",
    )
    original = AccountState("acme")
    run(busy_account(), state=original)
    restored = AccountState.from_bytes(original.to_bytes())

    from_restored = run(future, state=restored)

    assert from_restored == run(future, state=original)
    assert signals(from_restored) != []
    assert restored.to_bytes() == original.to_bytes()


def test_states_stored_by_versions_1_and_2_are_read() -> None:
    # version 1 had no input positions; version 2 kept them as its last element
    # (the fields of version 3, which versions 1 and 2 had too)
    value_3 = Path(__file__).parent / "data" / "account-value-v3.json"
    fields = orjson.loads(value_3.read_bytes())[2][1:]
    version_1 = orjson.dumps([1, *fields])
    version_2 = orjson.dumps([2, *fields, [[0, 41, 0], [3, 7, 2]]])
    version_3 = orjson.dumps([3, *fields])

    stored = [AccountState.from_bytes(value).to_bytes() for value in (version_1, version_2)]

    assert stored == [AccountState.from_bytes(version_3).to_bytes()] * 2


def test_an_empty_state_survives_a_round_trip() -> None:
    state = AccountState("acme")

    assert AccountState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()


def test_cached_window_queries_give_the_same_outcomes_as_a_state_restored_every_event() -> None:
    # The transient caches (memo, active counts) are rebuilt from nothing after a restore,
    # so a state restored before every event computes every window afresh.
    from datetime import UTC, datetime

    from streams.domain.decide import Detector
    from streams.events import validate_event
    from streams.rules import load
    from streams.settings import Settings
    from streams.simulate.world import Simulation

    detector = Detector(load(Settings().rules_file))
    simulation = Simulation(60, 75, seed=11, start=datetime(2026, 1, 1, tzinfo=UTC))
    kept: dict[str, AccountState] = {}
    stored: dict[str, bytes] = {}
    outcomes = 0
    for raw in simulation.events():
        event = validate_event(raw)
        account = event.account_id
        state = kept.setdefault(account, AccountState(account))
        fresh = AccountState.from_bytes(stored[account]) if account in stored else None
        fresh = fresh or AccountState(account)
        cached, uncached = detector.apply(state, event), detector.apply(fresh, event)
        stored[account] = fresh.to_bytes()
        assert cached == uncached
        outcomes += len(cached.signals) + len(cached.decisions)
    assert outcomes > 50


def test_a_stored_value_holds_no_more_memory_than_its_length_needs() -> None:
    import tracemalloc

    state = AccountState("acme")
    run(busy_account(), state=state)
    tracemalloc.start()
    try:
        values = [state.to_bytes() for _ in range(200)]
        held = tracemalloc.get_traced_memory()[0] / len(values)
    finally:
        tracemalloc.stop()
    assert held < len(values[0]) + 256

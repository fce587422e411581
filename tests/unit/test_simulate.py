"""The simulator: deterministic, contract-valid, ordered; every archetype shows its behaviour."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from scenario import SHIPPED_RULES

from streams.clock import DAY, format_ms
from streams.events import EVENT_TYPES, MAX_MESSAGE_BYTES, decode
from streams.simulate import cli, wire, world

START = datetime(2026, 1, 5, tzinfo=UTC)
# The shipped rules' gate numbers per segment (contract section 6).
UTILIZATION_MINIMUM = {"smb": 0.6, "mid_market": 0.7, "enterprise": 0.75}
ADOPTION_MINIMUM = {"smb": 3, "mid_market": 5, "enterprise": 7}
# The plan feature lists shipped under `plans.<plan>.features` in config/rules.yaml.
PLAN_FEATURES = {
    plan: listed.features for plan, listed in SHIPPED_RULES.for_segment("smb").plans.items()
}


@pytest.fixture(scope="module")
def run() -> tuple[world.Simulation, list[dict[str, Any]]]:
    simulation = world.Simulation(accounts=80, days=80, seed=11, start=START)
    return simulation, list(simulation.events())


@pytest.fixture(scope="module")
def default_run() -> tuple[world.Simulation, list[dict[str, Any]]]:
    """The command's default size: 300 accounts over 90 days."""
    simulation = world.Simulation(accounts=300, days=90, seed=7, start=START)
    return simulation, list(simulation.events())


@pytest.fixture(scope="module")
def met(run: tuple[world.Simulation, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Each account's trigger conditions and failed gates, re-derived from its events."""
    _, events = run
    return {
        account: _conditions(account_events) | _v2_conditions(account_events)
        for account, account_events in _by_account(events).items()
    }


def _seconds(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def _by_account(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()
    for event in events:
        if event["event_id"] not in seen:  # what the detector counts, after dedup
            seen.add(event["event_id"])
            grouped[event["account_id"]].append(event)
    return grouped


def _conditions(events: list[dict[str, Any]]) -> set[str]:
    """Re-derive, independently of the simulator, which trigger conditions one account meets."""
    met: set[str] = set()
    seat_limit = 0
    usage_limits: dict[str, float] = {}
    seated: set[str] = set()
    saturated_since: float | None = None
    month_to_date: dict[tuple[str, int, int], float] = defaultdict(float)
    gate_hits: list[tuple[float, str, str]] = []
    invites: list[float] = []
    department_first: dict[str, float] = {}
    department_users: dict[str, list[tuple[float, str]]] = defaultdict(list)
    user_days: dict[str, set[date]] = defaultdict(set)
    health: list[float] = []
    for event in events:
        at = _seconds(event)
        kind, props = event["type"], event["properties"]
        if event.get("user_id"):
            user_days[event["user_id"]].add(datetime.fromtimestamp(at, UTC).date())
        if kind == "account_updated":
            seat_limit = props.get("seat_limit", seat_limit)
            usage_limits.update(props.get("usage_limits") or {})
            if props.get("health_score") is not None:
                health.append(props["health_score"])
        elif kind == "seat_assigned":
            seated.add(event["user_id"])
        elif kind == "seat_removed":
            seated.discard(event["user_id"])
        elif kind == "usage_recorded":
            moment = datetime.fromtimestamp(at, UTC)
            key = (props["meter"], moment.year, moment.month)
            month_to_date[key] += props["quantity"]
            limit = usage_limits[props["meter"]]
            elapsed = (at - datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()) / DAY
            projected = month_to_date[key] / elapsed * (elapsed + 14) if elapsed >= 7 else 0.0
            if month_to_date[key] >= 0.8 * limit or projected >= limit:
                met.add("usage_ceiling")
        elif kind == "feature_gate_hit":
            gate_hits.append((at, props["feature"], event["user_id"]))
            features = {f for t, f, _ in gate_hits if t > at - 14 * DAY}
            month = [(f, u) for t, f, u in gate_hits if t > at - 30 * DAY]
            if len(features) >= 3 or (len(month) >= 10 and len({u for _, u in month}) >= 2):
                met.add("gated_feature_demand")
        elif kind == "invite_sent":
            invites.append(at)
            if sum(1 for t in invites if t > at - 30 * DAY) >= 5:
                met.add("invite_surge")
        elif kind == "external_signal":
            met.add(props["kind"])
        department = props.get("department") if kind in ("seat_assigned", "user_active") else None
        if department:
            department_first.setdefault(department, at)
            department_users[department].append((at, event["user_id"]))
        if seat_limit:
            ratio = len(seated) / seat_limit
            if ratio >= 1.0:
                met.add("seat_saturation")
            if ratio >= 0.8:
                saturated_since = at if saturated_since is None else saturated_since
                if at - saturated_since >= 14 * DAY:
                    met.add("seat_saturation")
            else:
                saturated_since = None
    if department_first:
        known = min(department_first.values())
        for department, first in department_first.items():
            users = {u for t, u in department_users[department] if t < first + 14 * DAY}
            if first - known >= 30 * DAY and len(users) >= 2:
                met.add("new_department")
    if user_days:
        last = max(max(days) for days in user_days.values())
        day = min(min(days) for days in user_days.values())
        while day <= last:
            window = {
                u: sum(1 for d in days if day - timedelta(29) <= d <= day)
                for u, days in user_days.items()
            }
            active = [n for n in window.values() if n]
            if len(active) >= 3:
                mean = sum(active) / len(active)
                if max(active) >= 10 and max(active) >= 2 * mean:
                    met.add("power_user_emergence")
            recent_users = sum(
                1
                for days in user_days.values()
                if any(day - timedelta(13) <= d <= day for d in days)
            )
            earlier_users = sum(
                1
                for days in user_days.values()
                if any(day - timedelta(27) <= d <= day - timedelta(14) for d in days)
            )
            if earlier_users and recent_users < 0.7 * earlier_users:
                met.add("churn_risk")
            day += timedelta(1)
    if len(health) >= 2 and health[-1] <= health[0] - 10:
        met.add("health_drop")
    return met


def _date_seconds(text: str) -> float:
    """A renewal_date as the contract reads it: a date is 00:00 UTC."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).timestamp()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _window(by_date: dict[date, list[Any]], end: date, days: int) -> list[Any]:
    """Everything on the `days` dates ending at `end` (a window counted in whole UTC days)."""
    return [item for n in range(days) for item in by_date.get(end - timedelta(n), ())]


def _v2_conditions(events: list[dict[str, Any]]) -> set[str]:
    """Re-derive, independently of the simulator, one account's v2 triggers and failed gates."""
    met: set[str] = set()
    runs: dict[date, list[tuple[str, str, str]]] = defaultdict(list)
    used: dict[date, list[str]] = defaultdict(list)
    tickets: dict[date, list[str]] = defaultdict(list)
    active: dict[date, list[str]] = defaultdict(list)
    seats_on: dict[date, int] = {}
    plan_on: dict[date, str] = {}
    seated: set[str] = set()
    plan = segment = ""
    health: float | None = None
    renewal: float | None = None
    for event in events:
        at = _seconds(event)
        today = datetime.fromtimestamp(at, UTC).date()
        kind, props = event["type"], event["properties"]
        if event.get("user_id"):
            active[today].append(event["user_id"])
        if kind == "account_updated":
            plan = props.get("plan", plan)
            segment = props.get("segment", segment)
            health = props.get("health_score", health)
            if props.get("renewal_date") is not None:
                renewal = _date_seconds(props["renewal_date"])
            if props.get("nps") is not None and props["nps"] < 7:
                met.add("detractor")
        elif kind == "seat_assigned":
            seated.add(event["user_id"])
        elif kind == "seat_removed":
            seated.discard(event["user_id"])
        elif kind == "workflow_run":
            runs[today].append((event["user_id"], props["workflow"], props["status"]))
        elif kind == "feature_used":
            used[today].append(props["feature"])
        elif kind == "support_ticket":
            tickets[today].append(props["ticket_id"])
        elif kind == "external_signal":
            met.add(props["kind"])
        if renewal is not None and health is not None and health >= 80:
            if 0 <= renewal - at <= 60 * DAY:
                met.add("renewal_window")
        if plan:  # from the account's snapshot on (its ticket history comes before)
            seats_on[today], plan_on[today] = len(seated), plan
    first = min(seats_on)
    ever_used = False
    for today in sorted(seats_on):
        blocks = []
        for block in range(4):
            per_user: dict[str, set[str]] = defaultdict(set)
            for user, workflow, _ in _window(runs, today - timedelta(7 * block), 7):
                per_user[user].add(workflow)
            blocks.append(bool(per_user) and sum(map(len, per_user.values())) / len(per_user) > 3)
        month = _window(runs, today, 28)
        completed = sum(1 for _, _, status in month if status == "completed")
        if all(blocks) and completed > 0.9 * len(month):
            met.add("workflow_expansion")
        if max(Counter(w for _, w, _ in _window(runs, today, 30)).values(), default=0) > 50:
            met.add("workflow_depth")
        features = PLAN_FEATURES[plan_on[today]]
        tried = set(_window(used, today, 90)) & set(features)
        if len(tried) >= 0.75 * len(features):
            met.add("value_discovery")
        ever_used = ever_used or bool(used.get(today))
        if (today - first).days >= 29:  # a whole 30-day window inside the run
            seats, users = seats_on[today], len(set(_window(active, today, 30)))
            if seats and users / seats < UTILIZATION_MINIMUM[segment]:
                met.add("low_utilization")
            if ever_used and len(set(_window(used, today, 30))) < ADOPTION_MINIMUM[segment]:
                met.add("low_adoption")
        if (today - first).days >= 59:
            earlier = len(_window(tickets, today - timedelta(30), 30))
            if len(_window(tickets, today, 30)) > earlier:
                met.add("support_rising")
    return met


def test_same_seed_same_events_and_other_seed_differs() -> None:
    first = list(world.simulate(accounts=12, days=20, seed=3, start=START))
    again = list(world.simulate(accounts=12, days=20, seed=3, start=START))
    other = list(world.simulate(accounts=12, days=20, seed=4, start=START))
    assert first == again
    assert first != other
    assert {e["event_id"] for e in first}.isdisjoint(e["event_id"] for e in other)


def test_same_seed_same_events_in_another_process() -> None:
    """Nothing depends on the process's string hashing (the order of a set of names)."""
    argv = [sys.executable, "-m", "streams", "simulate", "--accounts", "60", "--days", "70"]
    argv += ["--seed", "5", "--start", "2026-01-05", "--out", "-"]
    runs = [
        subprocess.run(
            argv, capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": hashing}
        ).stdout
        for hashing in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert runs[0].count(b"\n") > 10_000


def test_events_can_be_regenerated_with_the_same_outcomes() -> None:
    simulation = world.Simulation(accounts=30, days=60, seed=5, start=START)
    events = list(simulation.events())
    outcomes = list(simulation.outcomes)
    assert list(simulation.events()) == events
    assert simulation.outcomes == outcomes


def test_default_start_ends_the_run_about_now() -> None:
    before = datetime.now(UTC).date()
    events = list(world.simulate(accounts=3, days=4))
    after = datetime.now(UTC).date()
    # (the accounts' support-ticket history comes first, from the 60 days before)
    snapshot = next(e for e in events if e["type"] != "support_ticket")
    first = datetime.fromisoformat(snapshot["timestamp"])
    assert first.date() in {before - timedelta(4), after - timedelta(4)}
    assert datetime.fromisoformat(events[-1]["timestamp"]) < datetime.now(UTC)


def test_timestamps_never_go_back(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    _, events = run
    seconds = [_seconds(e) for e in events]
    assert all(a <= b for a, b in zip(seconds, seconds[1:], strict=False))
    assert seconds[0] >= START.timestamp() - world.HISTORY_TICKET_DAYS * DAY  # ticket history
    assert min(
        s for s, e in zip(seconds, events, strict=True) if e["type"] != "support_ticket"
    ) >= (START.timestamp())
    assert seconds[-1] < START.timestamp() + 80 * DAY
    assert all(format_ms(round(_seconds(e) * 1000)) == e["timestamp"] for e in events)


def test_every_event_passes_the_decoder(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    _, events = run
    for event in events:
        decoded = decode(orjson.dumps(event))
        assert decoded.rejections == [], (event, decoded.rejections)
        assert len(decoded.events) == 1


def test_every_event_type_appears(
    default_run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    _, events = default_run
    assert set(Counter(e["type"] for e in events)) == set(EVENT_TYPES)
    kinds = {e["properties"]["kind"] for e in events if e["type"] == "external_signal"}
    assert kinds == set(world.EXTERNAL_KINDS)


def test_each_account_opens_with_a_full_account_update(
    run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, events = run
    grouped = _by_account(events)
    assert set(grouped) == {p.account_id for p in simulation.accounts}
    segments: Counter[str] = Counter()
    for profile in simulation.accounts:
        # after the account's support-ticket history, if it files tickets
        first = next(e for e in grouped[profile.account_id] if e["type"] != "support_ticket")
        assert first["type"] == "account_updated"
        props = first["properties"]
        always = {"plan", "seat_limit", "usage_limits", "segment", "mrr"}
        assert always | {"activated_at", "health_score"} <= set(props)
        assert set(props) <= always | {"activated_at", "health_score", "renewal_date", "nps"}
        low, high = world.SEGMENTS[props["segment"]].mrr
        assert low <= props["mrr"] <= high
        segments[props["segment"]] += 1
    assert segments["smb"] > segments["mid_market"] > segments["enterprise"] > 0
    activation = [p.activated_at for p in simulation.accounts]
    assert None in activation and sum(a is not None for a in activation) > len(activation) / 2
    assert any(p.activation_day is not None for p in simulation.accounts)
    assert any(p.health_score is None for p in simulation.accounts)


def test_duplicates_are_exact_retries(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    _, events = run
    first: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for event in events:
        if event["event_id"] in first:
            duplicates += 1
            assert event == first[event["event_id"]]
        else:
            first[event["event_id"]] = event
    assert 0 < duplicates < 0.02 * len(events)


@pytest.mark.parametrize(
    ("archetype", "condition"),
    [
        ("seat_growth", "seat_saturation"),
        ("usage_growth", "usage_ceiling"),
        ("tier_curious", "gated_feature_demand"),
        ("invite_surge", "invite_surge"),
        ("new_department", "new_department"),
        ("power_user", "power_user_emergence"),
        ("churning", "churn_risk"),
        ("workflow_heavy", "workflow_expansion"),
        ("workflow_deep", "workflow_depth"),
        ("feature_explorer", "value_discovery"),
        ("renewal_expansion", "renewal_window"),
        ("expansion_inquiry", "expansion_inquiry"),
        ("qbr_unmet_need", "qbr_unmet_need"),
        ("shelfware", "low_utilization"),
        ("shallow_adoption", "low_adoption"),
        ("support_strain", "support_rising"),
        ("detractor", "detractor"),
    ],
)
def test_archetype_shows_its_trigger(
    run: tuple[world.Simulation, list[dict[str, Any]]],
    met: dict[str, set[str]],
    archetype: str,
    condition: str,
) -> None:
    simulation, _ = run
    accounts = [p for p in simulation.accounts if archetype in p.archetypes]
    assert accounts
    hits = [p.account_id for p in accounts if condition in met[p.account_id]]
    assert len(hits) >= 0.75 * len(accounts), (archetype, hits, [p.account_id for p in accounts])


@pytest.mark.parametrize("condition", ["low_utilization", "low_adoption", "support_rising"])
def test_ordinary_accounts_pass_the_new_gates(
    run: tuple[world.Simulation, list[dict[str, Any]]],
    met: dict[str, set[str]],
    condition: str,
) -> None:
    simulation, _ = run
    steady = [p.account_id for p in simulation.accounts if p.archetypes == ("steady",)]
    failing = [account for account in steady if condition in met[account]]
    assert len(failing) <= 0.15 * len(steady), failing


def test_gate_archetypes_also_show_expansions_their_gate_holds_back() -> None:
    gates = {
        "churning": "churn_risk",
        "shelfware": "low_utilization",
        "shallow_adoption": "low_adoption",
        "support_strain": "support_rising",
        "detractor": "detractor",
    }
    behaviours = {
        "seat_growth": "seat_saturation",
        "usage_growth": "usage_ceiling",
        "tier_curious": "gated_feature_demand",
        "invite_surge": "invite_surge",
        "new_department": "new_department",
    }
    simulation = world.Simulation(
        accounts=60, days=90, seed=4, start=START, mix=dict.fromkeys(gates, 1.0)
    )
    grouped = _by_account(list(simulation.events()))
    both: Counter[str] = Counter()
    for profile in simulation.accounts:
        if len(profile.archetypes) < 2:
            continue
        primary, second = profile.archetypes
        events = grouped[profile.account_id]
        conditions = _conditions(events) | _v2_conditions(events)
        if {gates[primary], behaviours[second]} <= conditions:
            both[primary] += 1
    assert set(both) == set(gates), both


def test_steady_accounts_stay_mostly_quiet(
    run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, events = run
    grouped = _by_account(events)
    steady = [p for p in simulation.accounts if p.archetypes == ("steady",)]
    expansion = {
        "seat_saturation",
        "usage_ceiling",
        "gated_feature_demand",
        "invite_surge",
        "new_department",
        "power_user_emergence",
        "workflow_expansion",
        "workflow_depth",
        "value_discovery",
        "expansion_inquiry",
        "qbr_unmet_need",
    }
    loud = [
        p.account_id
        for p in steady
        if (_conditions(grouped[p.account_id]) | _v2_conditions(grouped[p.account_id])) & expansion
    ]
    assert len(steady) > 0.25 * len(simulation.accounts)
    assert len(loud) <= 0.1 * len(steady), loud


def test_v2_events_are_present(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    simulation, events = run
    counts = Counter(e["type"] for e in events)
    for kind in ("workflow_run", "feature_used"):
        assert counts[kind] > 0.02 * len(events), counts
    assert counts["support_ticket"] > 0.005 * len(events), counts
    assert 0 < counts["expansion_outcome"] < 0.01 * len(events)
    statuses = Counter(e["properties"]["status"] for e in events if e["type"] == "workflow_run")
    assert 0 < statuses["failed"] < 0.1 * statuses["completed"]
    senders = {
        kind: {e["account_id"] for e in events if e["type"] == kind}
        for kind in ("feature_used", "support_ticket", "workflow_run")
    }
    accounts = len(simulation.accounts)
    assert len(senders["feature_used"]) > 0.6 * accounts
    assert len(senders["support_ticket"]) > 0.6 * accounts
    assert 0.2 * accounts < len(senders["workflow_run"]) < 0.8 * accounts
    details = {
        e["properties"]["kind"]: e["properties"]["detail"]
        for e in events
        if e["type"] == "external_signal"
    }
    assert details["expansion_inquiry"]["team"] in world.DEPARTMENTS
    assert details["qbr_unmet_need"]["need"] in world.GATED_FEATURES


def test_plan_features_are_the_shipped_rules_lists() -> None:
    assert {plan: list(features) for plan, features in world.PLAN_FEATURES.items()} == (
        PLAN_FEATURES
    )


def test_renewal_dates_come_as_dates_and_date_times_and_some_move(
    run: tuple[world.Simulation, list[dict[str, Any]]], met: dict[str, set[str]]
) -> None:
    simulation, events = run
    renewals: dict[str, list[tuple[float, float]]] = defaultdict(list)  # sent at, date
    for event in events:
        value = event["properties"].get("renewal_date")
        if event["type"] == "account_updated" and value is not None:
            renewals[event["account_id"]].append((_seconds(event), _date_seconds(value)))
    values = [
        e["properties"]["renewal_date"]
        for e in events
        if e["type"] == "account_updated" and "renewal_date" in e["properties"]
    ]
    assert any(len(v) == 10 for v in values) and any(len(v) > 10 for v in values)
    assert any(v.endswith("Z") for v in values) and any(v.endswith(":00") for v in values)
    assert len(renewals) > 0.3 * len(simulation.accounts)
    moved = [
        account
        for account, sent in renewals.items()
        if any(at < old < new for (_, old), (at, new) in zip(sent, sent[1:], strict=False))
    ]
    rolled = [
        account
        for account, sent in renewals.items()
        if any(old <= at for (_, old), (at, _) in zip(sent, sent[1:], strict=False))
    ]
    assert moved and rolled
    in_window = [a for a in renewals if "renewal_window" in met[a]]
    healthy = {p.account_id for p in simulation.accounts if (p.health_score or 0) >= 80}
    assert in_window and set(renewals) - healthy  # some near their renewal, some not healthy


def test_nps_is_known_for_many_accounts_detractors_among_them(
    run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, events = run
    latest: dict[str, float] = {}
    for event in events:
        if event["type"] == "account_updated" and event["properties"].get("nps") is not None:
            latest[event["account_id"]] = event["properties"]["nps"]
    assert len(latest) > 0.4 * len(simulation.accounts)
    scores = list(latest.values())
    assert any(score < 7 for score in scores) and any(score >= 9 for score in scores)
    assert all(0 <= score <= 10 for score in scores)


def test_support_load_rises_for_some_accounts_only(
    run: tuple[world.Simulation, list[dict[str, Any]]], met: dict[str, set[str]]
) -> None:
    simulation, _ = run
    rising = {a for a, conditions in met.items() if "support_rising" in conditions}
    strained = {p.account_id for p in simulation.accounts if "support_strain" in p.archetypes}
    assert strained & rising
    assert 0 < len(rising) < 0.3 * len(simulation.accounts)


def _conversions(events: list[dict[str, Any]]) -> list[float]:
    """When an account_updated raised seat_limit or a usage limit, or changed plan."""
    out = []
    seat_limit: int | None = None
    limits: dict[str, float] = {}
    plan: str | None = None
    for event in events:
        if event["type"] != "account_updated":
            continue
        props = event["properties"]
        raised = seat_limit is not None and props.get("seat_limit", seat_limit) > seat_limit
        raised |= any(
            meter in limits and limit > limits[meter]
            for meter, limit in (props.get("usage_limits") or {}).items()
        )
        raised |= plan is not None and props.get("plan", plan) != plan
        if raised:
            out.append(_seconds(event))
        seat_limit = props.get("seat_limit", seat_limit)
        limits.update(props.get("usage_limits") or {})
        plan = props.get("plan", plan)
    return out


def test_stalled_pqls_are_small_accounts_that_do_not_convert_for_a_month(
    run: tuple[world.Simulation, list[dict[str, Any]]], met: dict[str, set[str]]
) -> None:
    simulation, events = run
    grouped = _by_account(events)
    stalled = [p for p in simulation.accounts if p.archetypes[0] == "stalled_pql"]
    assert stalled
    shown = {
        "seat_growth": "seat_saturation",
        "usage_growth": "usage_ceiling",
        "tier_curious": "gated_feature_demand",
        "invite_surge": "invite_surge",
    }
    for profile in stalled:
        behaviour = profile.archetypes[1]
        assert profile.segment == "smb"
        assert profile.mrr * 0.4 < 500  # any estimate routes in_app
        onset = START.timestamp() + profile.onsets[behaviour] * DAY
        assert all(at >= onset + 60 * DAY for at in _conversions(grouped[profile.account_id]))
    assert sum(shown[p.archetypes[1]] in met[p.account_id] for p in stalled) >= 0.75 * len(stalled)
    # Other small accounts with an expansion behaviour convert on their own.
    self_serve = [
        p.account_id
        for p in simulation.accounts
        if p.segment == "smb"
        and p.archetypes[0] in world.EXPANSION_ARCHETYPES
        and _conversions(grouped[p.account_id])
    ]
    assert self_serve


def test_a_csm_records_outcomes_for_larger_accounts_only(
    default_run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, events = default_run
    segments = {p.account_id: p.segment for p in simulation.accounts}
    grouped = _by_account(events)
    stages: Counter[str] = Counter()
    for account, account_events in grouped.items():
        for event in account_events:
            if event["type"] != "expansion_outcome":
                continue
            assert segments[account] != "smb"
            assert "user_id" not in event  # a CSM is not one of the account's users
            stages[event["properties"]["stage"]] += 1
            if event["properties"]["stage"] == "won":
                # the conversion the won deal made, later that day
                after = [_seconds(event) < at for at in _conversions(account_events)]
                converted = _conversions(account_events)[after.index(True)]
                assert converted - _seconds(event) < DAY, event
    assert set(stages) == {"opportunity", "won", "lost", "rejected"}, stages


def test_churning_accounts_lose_health(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    simulation, events = run
    grouped = _by_account(events)
    churning = [
        p for p in simulation.accounts if "churning" in p.archetypes and p.health_score is not None
    ]
    assert churning
    assert all("health_drop" in _conditions(grouped[p.account_id]) for p in churning)


def test_outcomes_belong_to_simulated_accounts(
    run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, _ = run
    ids = {p.account_id for p in simulation.accounts}
    assert simulation.outcomes
    for outcome in simulation.outcomes:
        assert set(outcome) == {"account_id", "kind", "date"}
        assert outcome["account_id"] in ids
        assert outcome["kind"] in world.OUTCOME_KINDS
        assert START.date() <= date.fromisoformat(outcome["date"]) < START.date() + timedelta(80)
    expanding = {p.account_id for p in simulation.accounts if p.archetypes[0] != "steady"}
    caused = [o for o in simulation.outcomes if o["account_id"] in expanding]
    assert len(caused) > len(simulation.outcomes) / 2


def test_volume_of_the_default_run_is_modest(
    default_run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, events = default_run
    assert 50_000 <= len(events) <= 150_000
    assert {o["kind"] for o in simulation.outcomes} == set(world.OUTCOME_KINDS)
    # Activity and usage still make most of the stream, as in a real product's.
    counts = Counter(e["type"] for e in events)
    assert counts["user_active"] + counts["usage_recorded"] > 0.7 * len(events)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("not_json", "not_json"),
        ("schema", "schema"),
        ("unknown_type", "unknown_type"),
        ("timestamp", "timestamp"),
    ],
)
def test_malformed_messages_are_rejected_with_their_reason(kind: str, reason: str) -> None:
    rng = random.Random(1)
    base = next(world.simulate(accounts=1, days=1, seed=1, start=START))
    for _ in range(20):
        raw = wire.malformed(rng, base, kind)
        assert b"\n" not in raw
        assert base["event_id"].encode() not in raw  # never mistaken for a retry of `base`
        decoded = decode(raw)
        assert decoded.events == []
        assert [r.reason for r in decoded.rejections] == [reason], raw


def test_messages_mix_in_bad_lines_only_when_asked() -> None:
    events = list(world.simulate(accounts=5, days=10, seed=2, start=START))
    clean = list(wire.messages(events))
    assert [orjson.loads(raw) for _, raw in clean] == events
    mixed = list(wire.messages(events, bad_fraction=0.2, seed=2))
    rejected = sum(1 for _, raw in mixed if decode(raw).rejections)
    assert len(mixed) - len(events) == rejected > 0
    assert all(key.startswith("acct-") for key, _ in mixed)


def test_cli_writes_events_and_outcomes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    argv = ["--accounts", "40", "--days", "45", "--seed", "9", "--start", "2026-02-01"]
    code = cli.main([*argv, "--out", str(out), "--outcomes", str(outcomes)])
    assert code == 0
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    start = datetime(2026, 2, 1, tzinfo=UTC)
    simulation = world.Simulation(accounts=40, days=45, seed=9, start=start)
    assert written == list(simulation.events())
    assert [
        orjson.loads(line) for line in outcomes.read_bytes().splitlines()
    ] == simulation.outcomes
    assert "100%" in capsys.readouterr().err


def _decoded_lines(raw: bytes) -> list[list[dict[str, Any]]]:
    """Each line's events, as the objects they were sent as."""
    out = []
    for line in raw.splitlines():
        decoded = decode(line)
        assert decoded.rejections == [], line[:200]
        out.append(decoded.sources)
    return out


def test_batches_hold_up_to_n_events_of_one_account_in_their_order() -> None:
    events = list(world.simulate(accounts=12, days=6, seed=8, start=START))
    batches = list(wire.batches(events, 5))
    assert sum(count for _, _, count in batches) == len(events)
    per_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, raw, count in batches:
        decoded = decode(raw)
        assert decoded.rejections == []
        assert 1 <= len(decoded.sources) == count <= 5
        assert {event["account_id"] for event in decoded.sources} == {key}
        assert len({event["timestamp"][:10] for event in decoded.sources}) == 1  # one day each
        per_account[key].extend(decoded.sources)
    assert per_account == _by_account_in_order(events)


def _by_account_in_order(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        grouped[event["account_id"]].append(event)
    return grouped


def test_a_batch_is_closed_before_it_reaches_the_message_limit() -> None:
    padding = "x" * 250  # a department name at its longest
    events = [
        {
            "event_id": f"e{n}",
            "type": "user_active",
            "account_id": "big",
            "user_id": f"u{n}",
            "timestamp": "2026-01-05T10:00:00.000Z",
            "properties": {"department": padding},
        }
        for n in range(6_000)
    ]
    batches = list(wire.batches(events, 10_000))
    assert len(batches) == 3  # 6,000 events of 390 bytes
    assert all(len(raw) <= wire.BATCH_BYTES < MAX_MESSAGE_BYTES for _, raw, _ in batches)
    assert all(decode(raw).rejections == [] for _, raw, _ in batches)
    assert [e for _, raw, _ in batches for e in decode(raw).sources] == events


def test_batches_mix_in_malformed_messages_on_lines_of_their_own() -> None:
    events = list(world.simulate(accounts=5, days=10, seed=2, start=START))
    mixed = list(wire.batches(events, 20, bad_fraction=0.05, seed=2))
    bad = [raw for _, raw, _ in mixed if decode(raw).rejections]
    assert bad and all(decode(raw).events == [] for raw in bad)
    good = [e for _, raw, _ in mixed if not decode(raw).rejections for e in decode(raw).sources]
    assert _by_account_in_order(good) == _by_account_in_order(events)


def test_cli_writes_batches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "events.jsonl"
    argv = ["--accounts", "15", "--days", "8", "--seed", "9", "--start", "2026-02-01"]
    assert cli.main([*argv, "--batch", "10", "--out", str(out)]) == 0
    lines = _decoded_lines(out.read_bytes())
    assert max(len(batch) for batch in lines) == 10
    events = list(
        world.simulate(accounts=15, days=8, seed=9, start=datetime(2026, 2, 1, tzinfo=UTC))
    )
    assert _by_account_in_order([e for batch in lines for e in batch]) == _by_account_in_order(
        events
    )
    assert f"wrote {len(events):,} events in {len(lines):,} messages" in capsys.readouterr().err


def test_cli_paces_output_to_the_rate(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    argv = ["--accounts", "2", "--days", "3", "--seed", "1", "--start", "2026-02-01"]
    started = time.monotonic()
    assert cli.main([*argv, "--rate", "400", "--out", str(out)]) == 0
    elapsed = time.monotonic() - started
    count = len(out.read_bytes().splitlines())
    assert count > 80
    assert elapsed >= (count - 1) / 400 * 0.9


def test_pacer_holds_to_its_rate_and_zero_means_no_limit() -> None:
    pacer = wire.Pacer(100)
    assert 0.4 < pacer.delay(50) <= 0.5
    assert 0.9 < pacer.delay(50) <= 1.0
    assert (pacer.sent, pacer.messages) == (100, 2)
    assert wire.Pacer(0).delay(10**6) == 0.0


def test_cli_needs_somewhere_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as nowhere:
        cli.main(["--accounts", "1", "--days", "1"])
    assert nowhere.value.code == 2
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(SystemExit) as no_broker:
        cli.main(["--accounts", "1", "--days", "1", "--kafka"])
    assert no_broker.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["--accounts", "1", "--days", "1", "--out", "-", "--batch", "0"])

"""The simulator: deterministic, contract-valid, ordered; every archetype shows its behaviour."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.clock import DAY
from streams.events import EVENT_TYPES, MAX_MESSAGE_BYTES, decode
from streams.simulate import cli, wire, world

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def run() -> tuple[world.Simulation, list[dict[str, Any]]]:
    simulation = world.Simulation(accounts=80, days=80, seed=11, start=START)
    return simulation, list(simulation.events())


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


def test_same_seed_same_events_and_other_seed_differs() -> None:
    first = list(world.simulate(accounts=12, days=20, seed=3, start=START))
    again = list(world.simulate(accounts=12, days=20, seed=3, start=START))
    other = list(world.simulate(accounts=12, days=20, seed=4, start=START))
    assert first == again
    assert first != other
    assert {e["event_id"] for e in first}.isdisjoint(e["event_id"] for e in other)


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
    first = datetime.fromisoformat(events[0]["timestamp"])
    assert first.date() in {before - timedelta(4), after - timedelta(4)}
    assert datetime.fromisoformat(events[-1]["timestamp"]) < datetime.now(UTC)


def test_timestamps_never_go_back(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    _, events = run
    seconds = [_seconds(e) for e in events]
    assert all(a <= b for a, b in zip(seconds, seconds[1:], strict=False))
    assert seconds[0] >= START.timestamp()
    assert seconds[-1] < START.timestamp() + 80 * DAY
    assert all(e["timestamp"].endswith("Z") and len(e["timestamp"]) == 24 for e in events)


def test_every_event_passes_the_decoder(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    _, events = run
    for event in events:
        decoded = decode(orjson.dumps(event))
        assert decoded.rejections == [], (event, decoded.rejections)
        assert len(decoded.events) == 1


def test_every_event_type_appears(run: tuple[world.Simulation, list[dict[str, Any]]]) -> None:
    _, events = run
    assert set(Counter(e["type"] for e in events)) == set(EVENT_TYPES)
    kinds = {e["properties"]["kind"] for e in events if e["type"] == "external_signal"}
    big = world.Simulation(accounts=300, days=90, seed=7, start=START)
    kinds |= {e["properties"]["kind"] for e in big.events() if e["type"] == "external_signal"}
    assert kinds == set(world.EXTERNAL_KINDS)


def test_each_account_opens_with_a_full_account_update(
    run: tuple[world.Simulation, list[dict[str, Any]]],
) -> None:
    simulation, events = run
    grouped = _by_account(events)
    assert set(grouped) == {p.account_id for p in simulation.accounts}
    segments: Counter[str] = Counter()
    for profile in simulation.accounts:
        first = grouped[profile.account_id][0]
        assert first["type"] == "account_updated"
        props = first["properties"]
        assert set(props) == {
            "plan",
            "seat_limit",
            "usage_limits",
            "segment",
            "mrr",
            "activated_at",
            "health_score",
        }
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
    ],
)
def test_archetype_shows_its_trigger(
    run: tuple[world.Simulation, list[dict[str, Any]]], archetype: str, condition: str
) -> None:
    simulation, events = run
    grouped = _by_account(events)
    accounts = [p for p in simulation.accounts if archetype in p.archetypes]
    assert accounts
    hits = [p.account_id for p in accounts if condition in _conditions(grouped[p.account_id])]
    assert len(hits) >= 0.75 * len(accounts), (archetype, hits, [p.account_id for p in accounts])


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
    }
    loud = [p.account_id for p in steady if _conditions(grouped[p.account_id]) & expansion]
    assert len(steady) > 0.4 * len(simulation.accounts)
    assert len(loud) <= 0.1 * len(steady), loud


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


def test_volume_of_the_default_run_is_modest() -> None:
    simulation = world.Simulation(accounts=300, days=90, seed=7, start=START)
    count = sum(1 for _ in simulation.events())
    assert 50_000 <= count <= 150_000
    assert {o["kind"] for o in simulation.outcomes} == set(world.OUTCOME_KINDS)


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

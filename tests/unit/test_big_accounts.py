"""Accounts of 10,000 to 100,000 users: stored under the message limit, restored exactly."""

from __future__ import annotations

import asyncio
import hashlib
import random
import zlib

import pytest
from scenario import SHIPPED_RULES, active, events

from streams.clock import DAY
from streams.domain.gates import failed_gate
from streams.domain.state import HISTORY_DAYS, AccountState, event_key
from streams.domain.triggers import CATALOG, NewDepartmentRule, PowerUserEmergenceRule, evaluate
from streams.io.accounts import summarize
from streams.io.records import RECORD_OVERHEAD, Account, decode, encode, parts_for

LIMIT = 1_048_576  # Kafka's default message limit, the worker's default MESSAGE_MAX_BYTES
BUDGET = 16 * 1_048_576  # the default ACCOUNT_MAX_BYTES
TODAY = 19_900
DEPARTMENTS = ["engineering", "sales", "marketing", "support", "finance", "legal", "design"]


def enterprise(users: int, seed: int = 7) -> AccountState:
    """An account as `users` users leave it over the 64 days kept: each active on about a
    quarter of them, all seated, a tenth with a gate hit, a day of event ids remembered; two
    users active every day of the last 30 (the power user is the first of them in id order)."""
    rng = random.Random(seed)
    state = AccountState("enterprise")
    state.now = TODAY * DAY + 43_200.0
    state.today = state.pruned_day = TODAY
    state.seat_limit = users + 10
    for department, n in zip(DEPARTMENTS, range(len(DEPARTMENTS)), strict=True):
        state.departments[department] = state.now - (60 - n * 8) * DAY
    for n in range(users):
        user = f"usr-{n:06d}"
        mask = sum(1 << day for day in range(HISTORY_DAYS) if rng.random() < 0.25)
        last = TODAY - (mask & -mask).bit_length() + 1 if mask else TODAY - rng.randrange(64)
        state.users[user] = [last, (mask >> (TODAY - last)) or 1, DEPARTMENTS[n % 7]]
        state.seats.add(user)
        if n % 10 == 0:
            state.gate_users[user] = TODAY - rng.randrange(30)
    for user in (f"usr-{users - 1:06d}", f"usr-{users // 2:06d}"):
        state.users[user] = [TODAY, (1 << 30) - 1, "engineering"]
    for n in range(users // 2):
        ts = state.now - rng.random() * DAY
        state.seen[event_key(f"ev-{n}")] = [ts, ts + DAY]
    return state


def active_days(record: list) -> set[int]:
    """The days a user's record says the user was active, one by one."""
    last, mask, _ = record
    return {last - n for n in range(HISTORY_DAYS) if mask >> n & 1}


def window_counts(state: AccountState, first: int, last: int = TODAY) -> dict[str, int]:
    """Active days per user from day `first` to `last`, counted day by day."""
    counts = {}
    for user, record in state.users.items():
        n = sum(1 for day in active_days(record) if first <= day <= last)
        if n:
            counts[user] = n
    return counts


def stored_records(account: Account, key: bytes) -> dict[bytes, bytes]:
    encoded = encode(account, key, LIMIT, BUDGET)
    assert encoded.fits and encoded.dropped_before is None and not encoded.stale
    return {**encoded.parts, key: encoded.head}


@pytest.mark.parametrize("users", [10_000, 100_000])
def test_a_big_account_fits_the_message_limit_and_decides_as_a_plain_count(users: int) -> None:
    state = enterprise(users)
    records = stored_records(Account(state, {0: (5, 0)}), b"enterprise")

    assert len(records) == parts_for(users) + 1
    assert max(len(value) for value in records.values()) <= LIMIT - RECORD_OVERHEAD
    restored = decode(records[b"enterprise"], records.get, b"enterprise").state
    assert restored.users == state.users and restored.seats == state.seats
    assert restored.gate_users == state.gate_users and restored.seen == state.seen

    event = events(active(0, "usr-000000"))[0]
    counts = window_counts(restored, TODAY - 29)
    top = max(counts.values())
    power_user = CATALOG["power_user_emergence"].check(restored, event, PowerUserEmergenceRule())
    assert power_user == (
        1.0,
        {
            "user_id": min(user for user, n in counts.items() if n == top),
            "active_days": top,
            "mean_active_days": round(sum(counts.values()) / len(counts), 2),
            "active_users": len(counts),
            "window_days": 30,
        },
    )
    assert power_user[1]["user_id"] == f"usr-{users // 2:06d}"  # tied: the first in id order
    rule = NewDepartmentRule(window_days=14)
    department = CATALOG["new_department"].check(restored, event, rule)
    recent = window_counts(restored, TODAY - 13)
    assert department is not None and department[1]["department"] == "design"  # 12 days old
    assert department[1]["active_users"] == sum(
        1 for user in recent if restored.users[user][2] == "design"
    )
    assert restored.active_users(TODAY - 59, TODAY - 30) == len(
        window_counts(restored, TODAY - 59, TODAY - 30)
    )
    rules = SHIPPED_RULES.by_segment[SHIPPED_RULES.default_segment]
    assert evaluate(restored, event, rules) == evaluate(state, event, rules)
    assert failed_gate(restored, rules) == failed_gate(state, rules)


def test_an_event_of_a_big_account_rewrites_its_head_and_the_parts_it_touched() -> None:
    state = enterprise(10_000)
    account = Account(state, {0: (5, 0)})
    everything = stored_records(account, b"enterprise")
    later_today = {"timestamp": state.now + 60}
    event = events(active(0, "usr-000123"))[0].model_copy(update=later_today)
    state.apply(event, saturation_floor=0.8)
    state.remember(event_key(event.event_id), event.timestamp, DAY)

    again = encode(account, b"enterprise", LIMIT, BUDGET)

    assert len(again.parts) <= 2  # the user's part and the part of the event's key
    written = len(again.head) + sum(map(len, again.parts.values()))
    assert written < sum(map(len, everything.values())) / 20
    stored = {**everything, **again.parts, b"enterprise": again.head}
    restored = decode(again.head, stored.get, b"enterprise").state
    assert restored.users == state.users and restored.seen == state.seen


def test_an_account_growing_past_the_part_size_moves_to_new_parts_and_drops_the_old() -> None:
    account = Account(enterprise(600), {})
    first = encode(account, b"acme", LIMIT, BUDGET)
    for n in range(600, 1_200):
        account.state.users[f"usr-{n:06d}"] = [TODAY, 1, "sales"]

    grown = encode(account, b"acme", LIMIT, BUDGET)

    assert parts_for(600) == 4 and parts_for(1_200) == 8
    assert sorted(first.parts) == sorted(grown.stale)
    assert not set(grown.parts) & set(first.parts) and len(grown.parts) == 8
    restored = decode(grown.head, grown.parts.get, b"acme").state
    assert restored.users == account.state.users


def test_a_small_account_is_one_record() -> None:
    account = Account(enterprise(200), {})

    encoded = encode(account, b"acme", LIMIT, BUDGET)

    assert encoded.parts == {} and encoded.size == len(encoded.head)
    assert decode(encoded.head, {}.get, b"acme").state.to_bytes() == account.state.to_bytes()


def test_a_big_accounts_workflow_runs_are_kept_in_its_parts_and_read_back() -> None:
    state = enterprise(5_000)
    for n, user in enumerate(sorted(state.users)):
        state.workflow_users[user] = {f"w{n % 7}": [TODAY, 0b1011]}
    account = Account(state, {})

    records = stored_records(account, b"acme")
    restored = decode(records[b"acme"], records.get, b"acme").state

    assert b"w6" not in zlib.decompress(records[b"acme"])  # not in the head: in the parts
    assert restored.workflow_users == state.workflow_users
    assert restored.users == state.users


def test_parts_are_split_further_while_one_is_over_the_message_limit() -> None:
    state = enterprise(2_000)
    long_ids = {user: user + hashlib.sha512(user.encode()).hexdigest() for user in state.users}
    state.users = {long_ids[user]: record for user, record in state.users.items()}
    state.seats = set(state.users)

    encoded = encode(Account(state, {}), b"acme", 32_768, BUDGET)

    assert len(encoded.parts) > parts_for(2_000)
    assert max(map(len, encoded.parts.values())) <= 32_768 - RECORD_OVERHEAD
    assert encoded.dropped_before is None


def test_an_account_over_its_budget_loses_its_oldest_user_history_first() -> None:
    state = enterprise(10_000)
    account = Account(state, {})
    full = encode(Account(enterprise(10_000), {}), b"acme", LIMIT, BUDGET).size
    oldest = min(record[0] for record in state.users.values())

    encoded = encode(account, b"acme", LIMIT, full * 3 // 4)

    assert encoded.fits and encoded.size <= full * 3 // 4
    assert encoded.dropped_before is not None and encoded.dropped_before > oldest
    kept = {record[0] for record in state.users.values()}
    assert min(kept) == encoded.dropped_before  # the days kept are the most recent
    assert len(state.users) < 10_000 and state.seats == enterprise(10_000).seats
    stored = {**encoded.parts, b"acme": encoded.head}
    assert decode(encoded.head, stored.get, b"acme").state.users == state.users


def test_a_head_alone_over_the_message_limit_is_not_written() -> None:
    state = enterprise(1_000)
    names = (hashlib.sha512(b"%d" % n).hexdigest() for n in range(3_000))
    state.departments = {name: float(n) for n, name in enumerate(names)}

    encoded = encode(Account(state, {}), b"acme", 65_536, BUDGET)

    assert not encoded.fits and len(encoded.head) > 65_536 - RECORD_OVERHEAD


def test_an_account_whose_seats_alone_pass_its_budget_keeps_them_without_user_history() -> None:
    state = enterprise(10_000)

    encoded = encode(Account(state, {}), b"acme", LIMIT, budget=20_000)

    assert encoded.fits and encoded.dropped_before is not None
    assert state.users == {} and len(state.seats) == 10_000
    assert len(encoded.parts) == parts_for(10_000)  # the seats stay in their parts
    stored = {**encoded.parts, b"acme": encoded.head}
    assert decode(encoded.head, stored.get, b"acme").state.seats == state.seats


def test_a_split_account_is_summarized_once_with_the_bytes_of_all_its_records() -> None:
    big = encode(Account(enterprise(1_000), {}), b"big", LIMIT, BUDGET)
    small = encode(Account(enterprise(10), {}), b"small", LIMIT, BUDGET)
    items = [(b"small", small.head), *big.parts.items(), (b"big", big.head)]

    rows = asyncio.run(summarize(items))

    assert [size for size, _, _ in rows] == [small.size, big.size]
    assert [clock for _, clock, _ in rows] == [TODAY * DAY + 43_200.0] * 2

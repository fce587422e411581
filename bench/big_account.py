"""One account of 1,000, 10,000 and 100,000 users through the worker's own decode, detector
and account records, in this process: stored bytes, events per second, time of a save, and
the changelog bytes a busy 10,000-user account writes per second."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from streams.clock import DAY, format_time
from streams.domain.account import apply_events
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.events import Event, decode
from streams.io.records import Account, encode
from streams.rules import load
from streams.settings import Settings

SIZES = (1_000, 10_000, 100_000)
ACCOUNT = "bench-enterprise"
KEY = ACCOUNT.encode()
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HISTORY_DAYS = 60  # the users' activity is spread over these days before the busy day
ACTIVE_DAYS = 3  # days each user is active on, at random
BATCH = 500  # events a message, as clients send them
COMMIT_SECONDS = 2.8  # Faust's commit interval: a changed account is saved once per commit
BUSY_USERS = 10_000
BUSY_EVENTS_PER_USER = 5  # a day's events of each user of the busy account
BUSY_HOURS = 2  # of the busy day, measured


def _event(n: int, type_: str, ts: float, user: str, **properties: Any) -> dict[str, Any]:
    return {
        "event_id": f"{type_}-{n}",
        "type": type_,
        "account_id": ACCOUNT,
        "timestamp": format_time(ts),
        "user_id": user,
        "properties": properties,
    }


def history(users: int, seed: int) -> list[dict[str, Any]]:
    """An account of `users` seated users, each active on a few days of the last 60."""
    rng = random.Random(seed)
    departments = ["engineering", "sales", "marketing", "support", "finance", "product"]
    account: dict[str, Any] = {
        "event_id": "account",
        "type": "account_updated",
        "account_id": ACCOUNT,
        "timestamp": format_time(START),
        "properties": {
            "seat_limit": 2 * users,
            "segment": "enterprise",
            "mrr": 50_000,
            "activated_at": format_time(START - 400 * DAY),
            "health_score": 90,
        },
    }
    events = [account]
    for n in range(users):
        user = f"user-{n:06d}@example.com"
        department = departments[n % len(departments)]
        events.append(_event(n, "seat_assigned", START + n / users, user, department=department))
        for day in rng.sample(range(1, HISTORY_DAYS), ACTIVE_DAYS):
            ts = START + day * DAY + rng.random() * DAY
            events.append(_event(len(events), "user_active", ts, user, department=department))
    events[1:] = sorted(events[1:], key=lambda e: str(e["timestamp"]))
    return events


def decoded_batches(events: list[dict[str, Any]]) -> list[list[Event]]:
    batches = []
    for first in range(0, len(events), BATCH):
        decoded = decode(orjson.dumps({"events": events[first : first + BATCH]}))
        assert not decoded.rejections, decoded.rejections[:1]
        batches.append(decoded.events)
    return batches


def measure(users: int, detector: Detector, settings: Settings, seed: int) -> dict[str, Any]:
    """Events per second through decide, with a save every commit's worth of events, and the
    account's stored size and save time at the end."""
    batches = decoded_batches(history(users, seed))
    events = sum(map(len, batches))
    account = Account(AccountState(ACCOUNT), {})
    limit, budget = settings.message_max_bytes, settings.account_max_bytes
    started = time.perf_counter()
    for n, batch in enumerate(batches):
        apply_events(detector, account.state, batch)
        if n % 60 == 59:  # about a commit interval's worth of batches at ~10k events/s
            encode(account, KEY, limit, budget)
    encode(account, KEY, limit, budget)
    eps = events / (time.perf_counter() - started)
    fresh = Account(account.state, {})  # as after a restore: every part written again
    started = time.perf_counter()
    stored = encode(fresh, KEY, limit, budget)
    save_ms = (time.perf_counter() - started) * 1000
    return {
        "users": users,
        "events": events,
        "eps": eps,
        "state_bytes": stored.size,
        "records": len(stored.parts) + 1,
        "full_save_ms": save_ms,
        "history_dropped": stored.dropped_before is not None,
    }


def busy_day(detector: Detector, settings: Settings, seed: int) -> dict[str, Any]:
    """A 10,000-user account with every user active all day: changelog bytes per second of
    event time when each commit writes the changed records, against the whole value."""
    rng = random.Random(seed)
    account = Account(AccountState(ACCOUNT), {})
    for batch in decoded_batches(history(BUSY_USERS, seed)):
        apply_events(detector, account.state, batch)
    limit, budget = settings.message_max_bytes, settings.account_max_bytes
    whole = encode(account, KEY, limit, budget).size
    day_start = START + HISTORY_DAYS * DAY
    rate = BUSY_USERS * BUSY_EVENTS_PER_USER / DAY
    seconds = BUSY_HOURS * 3600
    times = sorted(day_start + rng.random() * seconds for _ in range(int(rate * seconds)))
    written = commits = 0
    window: list[dict[str, Any]] = []
    window_end = day_start + COMMIT_SECONDS
    for n, ts in enumerate([*times, day_start + seconds + COMMIT_SECONDS]):
        if ts >= window_end and window:
            for event in decoded_batches(window)[0]:
                apply_events(detector, account.state, [event])
            stored = encode(account, KEY, limit, budget)
            written += len(stored.head) + sum(map(len, stored.parts.values()))
            commits += 1
            window = []
        while ts >= window_end:
            window_end += COMMIT_SECONDS
        user = f"user-{rng.randrange(BUSY_USERS):06d}@example.com"
        window.append(_event(10_000_000 + n, "user_active", ts, user))
    return {
        "users": BUSY_USERS,
        "events_per_second": rate,
        "commits_with_changes": commits,
        "changelog_bytes_per_s": written / seconds,
        "whole_value_bytes_per_s": whole * commits / seconds,
        "whole_value_bytes": whole,
    }


def run(seed: int) -> dict[str, Any]:
    settings = Settings()
    detector = Detector(load(settings.rules_file))
    return {
        "accounts": [measure(users, detector, settings, seed) for users in SIZES],
        "busy": busy_day(detector, settings, seed),
    }


if __name__ == "__main__":
    print(orjson.dumps(run(11), option=orjson.OPT_INDENT_2).decode())

"""The time vocabulary: event-time days and months, and RFC 3339 formatting, in UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

HOUR = 3_600.0
DAY = 86_400.0


def day_of(seconds: float) -> int:
    """UTC date of an event time, as days since the epoch."""
    return int(seconds // DAY)


def month_of(seconds: float) -> int:
    """UTC calendar month of an event time, as year * 12 + month - 1."""
    return _month_of_day(int(seconds // DAY))


@lru_cache(maxsize=4096)
def _month_of_day(day: int) -> int:
    moment = datetime.fromtimestamp(day * DAY, tz=UTC)
    return moment.year * 12 + moment.month - 1


@lru_cache(maxsize=4096)
def month_start(month: int) -> float:
    """The event time at which a month (year * 12 + month - 1) begins."""
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp()


@lru_cache(maxsize=4096)
def format_time(seconds: float) -> str:
    """RFC 3339 in UTC with a Z suffix and millisecond precision. Cached: most times
    formatted are an account's own (a renewal date, a publication, the saturation's start),
    written again on every event while a trigger holds."""
    # isoformat cuts microseconds to milliseconds, as strftime and // 1000 did, a third faster
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_time(text: str) -> float:
    """The event time format_time wrote."""
    return datetime.fromisoformat(text).timestamp()


def format_ms(ms: int) -> str:
    """format_time of epoch milliseconds, exact to the millisecond."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def wall_clock() -> str:
    """The wall clock now, as format_time writes it."""
    return format_time(time.time())

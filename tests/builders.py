"""Literal events and small readers shared by the integration tests."""

from __future__ import annotations

import time
import urllib.request
from itertools import count
from typing import Any

import orjson

_ids = count(1)


def event(type_: str, account: str, timestamp: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": fields.pop("event_id", f"ev-{next(_ids)}"),
        "type": type_,
        "account_id": account,
        "timestamp": timestamp,
        **fields,
    }


def healthy_account(account: str, seat_limit: int = 10, mrr: float = 4000) -> dict[str, Any]:
    """An activated, healthy mid-market account with a seat limit and an API meter."""
    return event(
        "account_updated",
        account,
        "2026-03-01T00:00:00Z",
        properties={
            "plan": "team",
            "seat_limit": seat_limit,
            "usage_limits": {"api_calls": 1000},
            "segment": "mid_market",
            "mrr": mrr,
            "activated_at": "2025-06-01T00:00:00Z",
            "health_score": 90,
        },
    )


def seats(account: str, n: int, day: str = "2026-03-02", first: int = 0) -> list[dict[str, Any]]:
    return [
        event(
            "seat_assigned",
            account,
            f"{day}T10:{first + i:02d}:00Z",
            user_id=f"{account}-u{first + i}",
            properties={"department": "engineering"},
        )
        for i in range(n)
    ]


def values(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [orjson.loads(r["value"]) for r in records]


def metrics_of(worker: Any) -> str:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def wait_for_metric(worker: Any, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while line not in metrics_of(worker):
        assert time.monotonic() < deadline, f"{line!r} not in /metrics\n{worker.log_tail()}"
        time.sleep(0.3)

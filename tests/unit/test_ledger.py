"""The ledger's retries: a pooled connection that a restarted Redis closed fails once, and
that alone is not an outage; a second failure is, said once, and so is the recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.io import metrics
from streams.io.ledger import Ledger


def failing(times: int) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """An operation that fails `times` times with a connection error, then answers "ok"."""
    calls = [0]

    async def operation() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise RedisConnectionError("Connection closed by server.")
        return "ok"

    return operation, calls


def run(times: int, caplog: pytest.LogCaptureFixture) -> tuple[str, int, list[str]]:
    ledger = Ledger("redis://:secret@127.0.0.1:1/0", "test:", retry_max_seconds=0.5)
    operation, calls = failing(times)
    with caplog.at_level(logging.WARNING, logger="streams.io.ledger"):
        result = asyncio.run(ledger.retrying(operation))
    return result, calls[0], [record.getMessage() for record in caplog.records]


def test_one_failed_call_is_tried_again_without_reporting_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result, calls, lines = run(1, caplog)

    assert (result, calls) == ("ok", 2)
    assert lines == []
    assert metrics.REDIS_UP._value.get() == 1


def test_a_second_failure_is_an_outage_said_once_and_so_is_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result, calls, lines = run(3, caplog)

    assert (result, calls) == ("ok", 4)
    assert lines == [
        "Redis unreachable at redis://127.0.0.1:1/0 (ConnectionError); retrying until it answers",
        "Redis reachable again at redis://127.0.0.1:1/0",
    ]

"""Work over many accounts beside the agent (a commit's saves, the scorecard's rows, the
state report) gives way to the agent's messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")
# While the agent is at work, background work takes at most this share of the event loop.
# A commit saves every account changed since the last (~2,000 accounts, ~0.3 s of work at
# 3,300 events/s); at a turn of the event loop between slices, the agent got one message
# through per slice, and every message waited for the commit (docs/performance.md).
BACKGROUND_SHARE = 0.25
# The agent counts as at work for this long after it last took a message: longer than the
# gap between two messages under load, shorter than any background slice.
AT_WORK_FOR = 0.002
LOOK_EVERY = 0.001  # how often a waiting slice looks whether the agent is still at work

_last_message = 0.0  # time.perf_counter() when the agent last took a message


def message_taken() -> None:
    """Call when the agent takes a message."""
    global _last_message
    _last_message = time.perf_counter()


def agent_at_work() -> bool:
    return time.perf_counter() - _last_message < AT_WORK_FOR


async def give_way(worked: float) -> None:
    """After `worked` seconds of background work: a turn of the event loop, then a wait while
    the agent is at work, no longer than leaves the work its BACKGROUND_SHARE of the time.

    Work the agent itself waits for (a save forced by too many unsaved accounts) is held up
    at most AT_WORK_FOR: the agent takes no message meanwhile.
    """
    await asyncio.sleep(0)
    until = time.perf_counter() + worked * (1 - BACKGROUND_SHARE) / BACKGROUND_SHARE
    while agent_at_work() and time.perf_counter() < until:
        await asyncio.sleep(LOOK_EVERY)


async def in_slices(items: Iterable[T], size: int) -> AsyncIterator[T]:
    """The items, giving way to the agent before every `size`-th: long work over many
    accounts must not hold up the agent, and every message, until it is done."""
    started = time.perf_counter()
    for n, item in enumerate(items):
        if n % size == size - 1:
            await give_way(time.perf_counter() - started)
            started = time.perf_counter()
        yield item

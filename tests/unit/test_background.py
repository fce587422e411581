"""Background work over many accounts gives way to the agent's messages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streams.io import background
from streams.io.background import agent_at_work, in_slices

MESSAGES = 50  # few, so that the agent is done well inside the wait on a slow machine


def test_background_work_waits_between_its_slices_while_the_agent_is_at_work() -> None:
    """A commit's saves used to take a turn of the event loop between slices: the agent got
    one message through per slice, and every message waited for the commit."""
    order: list[str] = []

    async def agent() -> None:
        for _ in range(MESSAGES):
            background.message_taken()
            order.append("message")
            await asyncio.sleep(0)

    async def work() -> None:
        async for _ in in_slices(range(8), 4):
            time.sleep(0.002)  # holds the event loop, as encoding a slice of accounts does
            order.append("work")

    async def scenario() -> None:
        await asyncio.gather(agent(), work())

    asyncio.run(scenario())
    assert order.count("work") == 8
    assert order.index("work") < order.index("message", 2)  # the first slice ran beside it
    assert order[-1] == "work"  # the rest waited until the agent had taken every message


def test_work_the_agent_itself_waits_for_is_not_held_up(monkeypatch: Any) -> None:
    """A save forced by too many unsaved accounts runs inside the agent's message: the agent
    takes no message meanwhile, so the save's slices do not wait for it."""
    waited = []

    def at_work() -> bool:
        waited.append(agent_at_work())
        return waited[-1]

    monkeypatch.setattr(background, "agent_at_work", at_work)

    async def message() -> None:
        background.message_taken()
        async for _ in in_slices(range(8), 4):
            time.sleep(0.002)  # a slice takes longer than the agent counts as at work

    asyncio.run(message())
    assert waited == [False, False]

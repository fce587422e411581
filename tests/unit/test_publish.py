"""The publisher seam: the in-memory Publisher, and the live one with a fake broker and ledger."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import orjson
from scenario import account, decisions, events, invite, run, seat, signals

from streams.events import Event
from streams.io.delivery import Record
from streams.io.publisher import KafkaPublisher
from streams.publish import Collected, Publisher


def seat_history() -> list[Event]:
    """Seats past 80 % of the limit, then an invite surge that collides with them."""
    return events(
        account(0, seat_limit=10, segment="mid_market"),
        *[seat(0, f"u{n}") for n in range(9)],
        *[invite(1 + n / 10, "u1") for n in range(5)],
    )


class MemoryLedger:
    """The calls the live publisher makes of the Redis ledger, kept in memory."""

    def __init__(self) -> None:
        self.marked: dict[str, tuple[int | None, int | None]] = {}
        self.served: dict[str, dict[str, Any]] = {}

    async def published(self, signal_id: str) -> bool:
        return signal_id in self.marked

    async def mark_published(
        self, signal_id: str, partition: int | None = None, offset: int | None = None
    ) -> None:
        self.marked[signal_id] = (partition, offset)

    async def serve(self, primary: dict[str, Any]) -> None:
        self.served[primary["account_id"]] = primary


class AckingBroker:
    """A Delivery whose broker acks every record at once, on partition 0, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, bytes | None, dict[str, Any]]] = []

    async def deliver(self, records: list[Record]) -> list[Any]:
        placed = []
        for topic, key, value, _ in records:
            placed.append(SimpleNamespace(partition=0, offset=len(self.sent)))
            self.sent.append((topic, key, orjson.loads(value)))
        return placed


def without_emitted_at(signal: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in signal.items() if name != "emitted_at"}


def test_collected_publishes_each_signal_id_once_as_the_ledger_does() -> None:
    outcomes = run(seat_history())
    collected = Collected()

    async def publish_twice() -> None:  # the second time as after a crash: the same again
        for _ in range(2):
            await collected.publish("acme", outcomes)

    asyncio.run(publish_twice())

    assert signals(outcomes) != [] and collected.signals == signals(outcomes)
    assert collected.deduplicated == {"acme": len(signals(outcomes))}
    assert collected.ledger == {signal["signal_id"] for signal in signals(outcomes)}
    assert collected.decisions == decisions(outcomes) * 2
    servings = [outcome.serving for outcome in outcomes if outcome.serving is not None]
    assert collected.serving == {"acme": servings[-1]}


def test_collected_forgets_an_account_so_that_it_can_be_published_again() -> None:
    outcomes = run(seat_history())
    other = run(events(account(0), prefix="o", account_id="other"))
    collected = Collected()
    asyncio.run(collected.publish("acme", outcomes))
    asyncio.run(collected.publish("other", other))

    collected.forget({"acme"})
    assert collected.signals == [] and collected.serving == {} and collected.ledger == set()
    asyncio.run(collected.publish("acme", outcomes))

    assert collected.signals == signals(outcomes) and collected.deduplicated == {}
    assert collected.decisions == decisions(outcomes)


def test_the_live_publisher_sends_what_the_in_memory_one_keeps() -> None:
    outcomes = run(seat_history())
    ledger, broker = MemoryLedger(), AckingBroker()
    live = KafkaPublisher("signals", "decisions", ledger, broker)  # names stand for the topics
    collected = Collected()

    async def publish_twice() -> None:  # the second time as after a crash: the same again
        publishers: tuple[Publisher, ...] = (live, collected)
        for publisher in publishers:
            for _ in range(2):
                await publisher.publish("acme", outcomes, sent_at=time.time())

    asyncio.run(publish_twice())

    assert collected.signals != []
    sent = {
        topic: [value for to, _, value in broker.sent if to == topic]
        for topic in ("signals", "decisions")
    }
    assert list(map(without_emitted_at, sent["signals"])) == list(
        map(without_emitted_at, collected.signals)
    )
    assert all(signal["emitted_at"] is not None for signal in sent["signals"])
    assert sent["decisions"] == collected.decisions
    assert {key for _, key, _ in broker.sent} == {b"acme"}
    assert set(ledger.marked) == collected.ledger
    offsets = [offset for _, offset in ledger.marked.values()]
    assert offsets == [n for n, (to, _, _) in enumerate(broker.sent) if to == "signals"]
    assert without_emitted_at(ledger.served["acme"]) == without_emitted_at(
        collected.serving["acme"]
    )

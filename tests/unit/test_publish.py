"""The publisher seam: the in-memory Publisher, and the live one with a fake broker and ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
from scenario import SHIPPED_RULES, account, decisions, events, invite, outcome, run, seat, signals

from streams.clock import parse_time
from streams.events import Event
from streams.io.delivery import Record
from streams.io.ledger import Mark
from streams.io.publisher import KafkaPublisher
from streams.io.sla import ResponseSla
from streams.publish import Collected, Publisher
from streams.signals import Outcome


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
        self.answers: dict[str, tuple[int | None, int | None]] = {}
        self.pending: dict[str, float] = {}  # the response SLA's sorted set
        self.served: dict[str, dict[str, Any]] = {}
        self.round_trips = 0

    async def written(
        self, signal_ids: Sequence[str], answer_keys: Sequence[str]
    ) -> tuple[list[bool], list[bool]]:
        self.round_trips += 1
        return [s in self.marked for s in signal_ids], [a in self.answers for a in answer_keys]

    async def mark(self, marks: Sequence[Mark], serving: dict[str, Any] | None = None) -> None:
        self.round_trips += 1
        for mark in marks:
            kind, _, name = mark.key.partition(":")
            written = self.marked if kind == "ledger" else self.answers
            written[name] = (mark.partition, mark.offset)
            if mark.enters is not None:
                self.pending[mark.enters[0]] = mark.enters[1]
            if mark.takes_out is not None:
                self.pending.pop(mark.takes_out, None)
        if serving is not None:
            assert serving["emitted_at"] is not None
            self.served[serving["account_id"]] = serving

    async def serve(self, primary: dict[str, Any]) -> None:
        self.round_trips += 2  # a read, then a write
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


def live_publisher(ledger: MemoryLedger, broker: AckingBroker) -> KafkaPublisher:
    sla = ResponseSla(SHIPPED_RULES, ledger)  # type: ignore[arg-type]
    # names stand for the topics
    return KafkaPublisher("signals", "decisions", "outcomes", ledger, broker, sla)  # type: ignore[arg-type]


def test_the_live_publisher_sends_what_the_in_memory_one_keeps() -> None:
    outcomes = run(seat_history())
    ledger, broker = MemoryLedger(), AckingBroker()
    live = live_publisher(ledger, broker)
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


# -- outcome records ---------------------------------------------------------------------------


def answered_history() -> list[Event]:
    """A csm signal (a champion at a $5,000 account), then what the CRM says became of it."""
    return events(
        account(0, mrr=5000, segment="mid_market"),
        {"type": "external_signal", "day": 1, "properties": {"kind": "champion_promoted"}},
        outcome(3.5, "opportunity"),
        outcome(4, "opportunity"),  # a stage the signal already has
        outcome(11.25, "won", expansion_mrr=400, reason="a second team"),
        outcome(12, "lost", "not-a-signal-of-ours"),
    )


def test_each_answer_becomes_the_contracts_outcome_record_once() -> None:
    outcomes = run(answered_history())
    (signal,) = signals(outcomes)
    collected = Collected()

    async def publish_twice() -> None:  # the second time as after a crash: the same again
        for _ in range(2):
            await collected.publish("acme", outcomes)

    asyncio.run(publish_twice())

    common = {
        "signal_id": signal["signal_id"],
        "account_id": "acme",
        "trigger": "relationship_change",
        "route": "csm",
        "segment": "mid_market",
        "via": "reported",
        "detected_at": "2024-05-02T00:00:00.000Z",
    }
    assert collected.outcomes == [
        {
            **common,
            "stage": "opportunity",
            "outcome_at": "2024-05-04T12:00:00.000Z",
            "days_to_outcome": 2.5,
            "expansion_mrr": None,
            "reason": None,
            "source_event_id": "e3",
        },
        {
            **common,
            "stage": "won",
            "outcome_at": "2024-05-12T06:00:00.000Z",
            "days_to_outcome": 10.25,
            "expansion_mrr": 400,
            "reason": "a second team",
            "source_event_id": "e5",
        },
    ]
    assert [list(r) for r in collected.outcomes] == [list(Outcome.model_fields)] * 2
    for record in collected.outcomes:
        Outcome.model_validate(record)
    assert collected.unmatched == {"acme": 2}  # once per publication of the same input


def test_a_self_serve_conversion_is_written_as_won_via_self_serve() -> None:
    outcomes = run(
        events(
            account(0, seat_limit=10),
            {"type": "external_signal", "day": 1, "properties": {"kind": "funding_round"}},
            account(1.5, seat_limit=15, mrr=1300),
        )
    )
    collected = Collected()
    asyncio.run(collected.publish("acme", outcomes))

    ((stage, via, mrr, days),) = [
        (r["stage"], r["via"], r["expansion_mrr"], r["days_to_outcome"]) for r in collected.outcomes
    ]
    assert (stage, via, mrr, days) == ("won", "self_serve", 300, 0.5)


def test_the_live_publisher_writes_outcome_records_once_and_answers_the_sla() -> None:
    outcomes = run(answered_history())
    (signal,) = signals(outcomes)
    ledger, broker = MemoryLedger(), AckingBroker()
    live = live_publisher(ledger, broker)
    collected = Collected()

    async def publish(upto: int) -> None:
        for publisher in (live, collected):
            await publisher.publish("acme", outcomes[:upto])

    asyncio.run(publish(2))  # the signal alone: a person is to answer it within 48 h
    ((waiting, deadline),) = ledger.pending.items()
    assert waiting == f"{signal['signal_id']} csm relationship_change"
    (emitted_at,) = [value["emitted_at"] for to, _, value in broker.sent if to == "signals"]
    assert 0 <= deadline - 48 * 3600 - parse_time(emitted_at) < 0.001  # written to the ms
    asyncio.run(publish(len(outcomes)))  # everything again, as after a crash, and the answers

    sent = [value for to, _, value in broker.sent if to == "outcomes"]
    assert sent == collected.outcomes and len(sent) == 2
    assert set(ledger.answers) == {f"{signal['signal_id']}:{s}" for s in ("opportunity", "won")}
    assert ledger.pending == {}


def test_an_in_app_signal_waits_for_no_person() -> None:
    outcomes = run(seat_history())
    ledger = MemoryLedger()
    asyncio.run(live_publisher(ledger, AckingBroker()).publish("acme", outcomes))

    assert {s["route"] for s in signals(outcomes)} == {"in_app"}
    assert ledger.marked and ledger.pending == {}


def test_the_live_publisher_reads_the_ledger_once_and_writes_it_once_per_publication() -> None:
    outcomes = run(answered_history())  # a signal, and two outcome records answering it
    ledger, broker = MemoryLedger(), AckingBroker()
    asyncio.run(live_publisher(ledger, broker).publish("acme", outcomes))

    assert len(ledger.marked) == 1 and len(ledger.answers) == 2
    assert ledger.round_trips == 2  # what is written already; the marks and the serving view
    (served,) = ledger.served.values()
    assert served["emitted_at"] is not None

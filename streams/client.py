"""A typed producer client: valid events, keyed by account, in per-account batch envelopes.

    from streams.client import EventProducer, event

    async with EventProducer("localhost:9094") as producer:
        report = await producer.send([
            event("seat_assigned", "acct-1", "2026-11-02T09:00:00Z", user_id="u-7"),
            event("usage_recorded", "acct-1", now, meter="api_calls", quantity=1200),
        ])
    report.rejections  # events the worker would reject, with its reason; not sent

`event()` raises InvalidEvent at once; `prepare()` (what `send` does first) checks a list
without raising, so one bad event does not hold back the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaProducer

from streams.clock import format_time
from streams.events import Rejection, decode, encode_batch, encode_batches

TOPIC = "product-events"
BATCH_EVENTS = 500  # events per envelope: one account's burst in one message
# Envelopes stay under the 1 MB a Kafka broker accepts by default, with room for headers.
BATCH_BYTES = 900_000


class InvalidEvent(ValueError):
    """An event the worker would reject; `rejection` holds the contract's reason and detail."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.detail}")
        self.rejection = rejection


def check(obj: Any) -> Rejection | None:
    """The worker's verdict on one event object: its rejection, or None when it is valid."""
    decoded = decode(encode_batch([obj]))
    if decoded.rejections:
        return decoded.rejections[0]
    return None


def event(
    event_type: str,
    account_id: str,
    timestamp: datetime | str,
    *,
    user_id: str | None = None,
    event_id: str | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """An event as the contract writes it, checked; a datetime must carry its time zone.

    `event_id` defaults to a new UUID; give your own to make a resend count once.
    """
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp: a datetime needs a tzinfo (event time is RFC 3339)")
        timestamp = format_time(timestamp.timestamp())
    obj: dict[str, Any] = {
        "event_id": event_id or uuid4().hex,
        "type": event_type,
        "account_id": account_id,
        "timestamp": timestamp,
        "properties": properties,
    }
    if user_id is not None:
        obj["user_id"] = user_id
    rejection = check(obj)
    if rejection is not None:
        raise InvalidEvent(rejection)
    return obj


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message: the account's id as key, and a batch envelope of its events."""

    key: bytes
    value: bytes
    events: int


@dataclass(slots=True)
class Prepared:
    """Messages ready to send, and the events left out: (position in the input, why)."""

    messages: list[Message] = field(default_factory=list)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)


def prepare(
    events: Iterable[Any], batch_events: int = BATCH_EVENTS, batch_bytes: int = BATCH_BYTES
) -> Prepared:
    """Check each event, group each account's (in order), and pack them into envelopes of
    at most `batch_events` events and `batch_bytes` bytes."""
    out = Prepared()
    by_account: dict[str, list[dict[str, Any]]] = {}
    for position, obj in enumerate(events):
        rejection = check(obj)
        if rejection is not None:
            out.rejections.append((position, rejection))
        else:
            by_account.setdefault(obj["account_id"], []).append(obj)
    for account, objs in by_account.items():
        for start in range(0, len(objs), batch_events):
            chunk = objs[start : start + batch_events]
            for value in encode_batches(chunk, batch_bytes):
                count = len(decode(value).events)
                out.messages.append(Message(account.encode(), value, count))
    return out


@dataclass(frozen=True, slots=True)
class Report:
    """What `send` did: messages and events sent, each message's partition, events left out."""

    messages: int
    events: int
    partitions: list[int]
    rejections: list[tuple[int, Rejection]]


class EventProducer:
    """Sends events to the events topic with aiokafka, whose default partitioner is Kafka's
    (murmur2 of the key, like the Java client's and librdkafka's `murmur2_random`): one
    account's messages all go to its partition, in order.

    Keyword arguments go to AIOKafkaProducer (security_protocol, sasl_*, ssl_context, ...).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str = TOPIC,
        *,
        batch_events: int = BATCH_EVENTS,
        **kafka: Any,
    ) -> None:
        self.topic = topic
        self.batch_events = batch_events
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, **kafka
        )

    async def __aenter__(self) -> EventProducer:
        await self.producer.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.producer.stop()

    async def send(self, events: Iterable[Any]) -> Report:
        """Send the valid events and wait until the broker has them; report the others."""
        prepared = prepare(events, self.batch_events)
        pending = [
            await self.producer.send(self.topic, message.value, key=message.key)
            for message in prepared.messages
        ]
        partitions = [(await sent).partition for sent in pending]
        return Report(
            messages=len(prepared.messages),
            events=sum(message.events for message in prepared.messages),
            partitions=partitions,
            rejections=prepared.rejections,
        )

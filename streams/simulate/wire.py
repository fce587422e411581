"""Simulated events on the wire: messages, batch envelopes, malformed lines, files and Kafka."""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

import orjson

from streams.events import MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES

MALFORMED_KINDS = ("not_json", "schema", "unknown_type", "timestamp")
# A batch envelope is closed before it reaches this size, well under the 1 MiB message limit.
BATCH_BYTES = 900_000


def malformed(
    rng: random.Random, base: dict[str, Any] | None = None, kind: str | None = None
) -> bytes:
    """Return one bad message of `kind` (default: random) for the DLQ, built from `base`.

    Kinds match the DLQ reasons: not_json, schema (a required field missing or wrong),
    unknown_type, timestamp. The bytes never contain a newline, so they fit in a JSONL file.
    """
    kind = kind or rng.choice(MALFORMED_KINDS)
    if kind not in MALFORMED_KINDS:
        raise ValueError(f"unknown malformed kind: {kind}")
    fresh_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if base is None:
        event: dict[str, Any] = {
            "event_id": fresh_id,
            "type": "user_active",
            "account_id": "acct-0001",
            "user_id": "usr-0001-0001",
            "timestamp": "2026-03-01T09:15:00.000Z",
            "properties": {"department": "sales"},
        }
    else:
        # A fresh id: a rejected message must not look like a retry of the good event it copies.
        event = {**copy.deepcopy(base), "event_id": fresh_id}
    if kind == "not_json":
        text = orjson.dumps(event)
        return rng.choice(
            (
                text[: rng.randint(1, len(text) - 2)],  # cut off mid-message
                b"account_id=" + event["account_id"].encode() + b"&type=" + event["type"].encode(),
                b"\xff\xfe" + text[:40],  # not UTF-8
                text.replace(b'"', b"'"),
            )
        )
    if kind == "schema":
        choice = rng.randrange(4)
        if choice == 0:
            del event["event_id"]
        elif choice == 1:
            del event["account_id"]
        elif choice == 2:
            event["type"], event["properties"] = "usage_recorded", {"meter": "api_calls"}
        else:
            event["type"], event["properties"] = "feature_gate_hit", {"required_plan": "business"}
            event.setdefault("user_id", "usr-0001-0001")
    elif kind == "unknown_type":
        event["type"] = rng.choice(("page_viewed", "seat_added", "UserActive", "user.active"))
    else:
        moment = datetime.fromisoformat(event["timestamp"])
        event["timestamp"] = rng.choice(
            (
                moment.strftime("%Y-%m-%d %H:%M:%S"),  # no offset
                moment.strftime("%m/%d/%Y %H:%M"),
                int(moment.timestamp()),
                "yesterday",
            )
        )
    return orjson.dumps(event)


def messages(
    events: Iterable[dict[str, Any]], bad_fraction: float = 0.0, seed: int = 7
) -> Iterator[tuple[str, bytes]]:
    """Encode events as (account_id key, value bytes), mixing in a share of malformed ones."""
    rng = random.Random(f"{seed}:malformed")
    for event in events:
        if bad_fraction and rng.random() < bad_fraction:
            yield event["account_id"], malformed(rng, event)
        yield event["account_id"], orjson.dumps(event)


def batches(
    events: Iterable[dict[str, Any]], size: int, bad_fraction: float = 0.0, seed: int = 7
) -> Iterator[tuple[str, bytes, int]]:
    """Encode events as (account_id key, batch envelope, events in it), as the contract asks.

    A batch holds up to `size` events of one account, in their order, and stays under the
    1 MiB message limit; every account's open batch is sent when the simulated day ends, so
    no batch spans two days. Malformed messages (`bad_fraction`) go on lines of their own.
    """
    if not 1 <= size <= MAX_BATCH_EVENTS:
        raise ValueError(f"batch size must be 1..{MAX_BATCH_EVENTS}, not {size}")
    rng = random.Random(f"{seed}:malformed")
    pending: dict[str, list[bytes]] = {}
    sizes: dict[str, int] = {}

    def envelope(account: str) -> tuple[str, bytes, int]:
        encoded = pending.pop(account)
        del sizes[account]
        return account, b'{"events":[' + b",".join(encoded) + b"]}", len(encoded)

    day = None
    for event in events:
        today = event["timestamp"][:10]
        if today != day:
            for account in list(pending):
                yield envelope(account)
            day = today
        account = event["account_id"]
        if bad_fraction and rng.random() < bad_fraction:
            yield account, malformed(rng, event), 1
        raw = orjson.dumps(event)
        if account in pending and sizes[account] + len(raw) + 1 > BATCH_BYTES:
            yield envelope(account)
        pending.setdefault(account, []).append(raw)
        sizes[account] = sizes.get(account, len(b'{"events":[]}')) + len(raw) + 1
        if len(pending[account]) >= size:
            yield envelope(account)
    for account in list(pending):
        yield envelope(account)


class Pacer:
    """Holds output to `rate` events per second (0: as fast as possible)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.sent = 0  # events, a malformed message counting as one
        self.messages = 0
        self.started = time.monotonic()

    def delay(self, events: int) -> float:
        """Count a message of `events` as sent; return how long to wait before the next."""
        self.sent += events
        self.messages += 1
        if not self.rate:
            return 0.0
        return max(0.0, self.started + self.sent / self.rate - time.monotonic())


def frames(
    events: Iterable[dict[str, Any]], batch: int, bad_fraction: float, seed: int
) -> Iterator[tuple[str, bytes, int]]:
    """Encode events as (account_id key, message, events in it); envelopes if `batch` > 1."""
    if batch > 1:
        yield from batches(events, batch, bad_fraction, seed)
    else:
        for key, raw in messages(events, bad_fraction, seed):
            yield key, raw, 1


def write(frames: Iterable[tuple[str, bytes, int]], out: BinaryIO, pacer: Pacer) -> None:
    """Write each message as a line of `out`, at the pacer's rate."""
    for _, raw, count in frames:
        out.write(raw + b"\n")
        wait = pacer.delay(count)
        if wait > 0.01:
            out.flush()  # whoever tails the file sees the paced stream as it comes
            time.sleep(wait)


async def produce(
    frames: Iterable[tuple[str, bytes, int]],
    bootstrap: str,
    topic: str,
    out: BinaryIO | None,
    pacer: Pacer,
) -> None:
    """Send each message to `topic` keyed by account (and copy it to `out`), paced."""
    from aiokafka import AIOKafkaProducer

    from streams.io.kafka_security import aiokafka_kwargs
    from streams.io.topics import ensure_topics
    from streams.settings import Settings

    settings = Settings()
    security = aiokafka_kwargs(settings)  # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*
    # Some brokers (the embedded one among them) create an unknown topic with their own
    # partition count; the detector's must match TOPIC_PARTITIONS.
    await ensure_topics(
        bootstrap,
        [topic],
        settings.topic_partitions,
        wait_seconds=settings.broker_wait_seconds,
        security=security,
    )
    # aiokafka's default partitioner is Kafka's murmur2: an account's events go to the
    # partition its state lives on, as the contract asks of producers.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        max_request_size=2 * MAX_MESSAGE_BYTES,
        **security,
    )
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, raw, count in frames:
            pending.append(await producer.send(topic, raw, key=key.encode()))
            if out is not None:
                out.write(raw + b"\n")
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)  # raises the first failed delivery
                pending.clear()
            wait = pacer.delay(count)
            if wait > 0.01:
                await asyncio.sleep(wait)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()

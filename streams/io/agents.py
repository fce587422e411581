"""The Faust agent: decode, DLQ, route to the account's partition, apply there, publish."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, cast

import faust
import orjson

from streams.domain.account import apply_events
from streams.domain.decide import Detector
from streams.events import Event, Rejection, decode, encode_batches
from streams.io import background, kafka_security, metrics, transport
from streams.io.accounts import AccountStore
from streams.io.delivery import Delivery, raw_topic
from streams.io.ledger import Ledger
from streams.io.reconcile import reconcile
from streams.io.records import Position
from streams.io.sla import ResponseSla
from streams.io.topics import partition_for
from streams.publish import Publisher
from streams.settings import Settings
from streams.signals import rejection_record

log = logging.getLogger(__name__)
# Kept of a rejected input in its DLQ record, so that the record itself stays well under
# the 1 MB a Kafka broker accepts by default, even after JSON escaping.
DLQ_RAW_LIMIT = 128 * 1024
# Room left in a message for the envelope's re-encoding, the key, headers and batch framing:
# forwarded batches stay under the message limit (900,000 bytes at the default 1 MiB).
FORWARD_HEADROOM = 148_576
# A forwarded batch names the input message it came from: "partition:offset:part".
SOURCE_HEADER = "x-expansion-source"
Source = tuple[int, Position]  # (input partition, position): where an account's events were read


def dlq_record(rejection: Rejection, message: Any) -> bytes:
    """The DLQ value of the contract: the rejected bytes and why, with the source position."""
    try:
        text = rejection.raw.decode("utf-8")
    except UnicodeDecodeError:
        kept = rejection.raw[:DLQ_RAW_LIMIT]
        raw, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        truncated = len(kept) < len(rejection.raw)
    else:
        raw, encoding, truncated = text[:DLQ_RAW_LIMIT], "utf-8", len(text) > DLQ_RAW_LIMIT
    return orjson.dumps(
        rejection_record(
            reason=rejection.reason,
            detail=rejection.detail,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            index=rejection.index,
            raw=raw,
            raw_encoding=encoding,
            raw_size=len(rejection.raw),
            raw_truncated=truncated,
        )
    )


def forwarded_from(message: Any) -> Source | None:
    """The input position a forwarded batch names (None for one forwarded by hand)."""
    for name, value in message.headers or ():
        if name == SOURCE_HEADER:
            partition, offset, part = (int(n) for n in value.split(b":"))
            return partition, (offset, part)
    return None


class Agent:
    """Processes one input message at a time; the account store is the only state."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        detector: Detector,
        accounts: AccountStore,
        publisher: Publisher,
        ledger: Ledger,
        delivery: Delivery,
        sla: ResponseSla,
    ) -> None:
        self.settings = settings
        self.sla = sla
        self.detector = detector
        self.accounts = accounts
        self.publisher = publisher
        self.ledger = ledger
        self.delivery = delivery
        self.partitions = settings.topic_partitions
        self.forward_limit = settings.message_max_bytes - FORWARD_HEADROOM
        # Set when partitions are assigned: the ledger is reconciled before the next message.
        self.needs_reconcile = True
        self.inputs = raw_topic(app, settings.topic_events, settings.repartition_topic)
        self.repartition = raw_topic(app, settings.repartition_topic)
        self.dlq = raw_topic(app, settings.topic_dlq)

    async def on_message(self, message: Any, key: bytes | None, value: bytes | None) -> None:
        """Decode one message and process each account's events where its state lives."""
        if self.needs_reconcile:
            settings = self.settings
            for topic, outcomes in (
                (settings.topic_signals, False),
                (settings.topic_outcomes, True),
            ):
                await reconcile(
                    self.ledger,
                    settings.kafka_bootstrap or "",
                    topic,
                    tansu=settings.embedded_broker,
                    outcomes=outcomes,
                    sla=self.sla,
                    **kafka_security.aiokafka_kwargs(settings),
                )
            self.needs_reconcile = False
        decoded = decode(value)
        if decoded.rejections:
            for rejection in decoded.rejections:
                metrics.REJECTED.labels(rejection.reason).inc()
                log.warning(
                    "rejected to DLQ reason=%s topic=%s partition=%s offset=%s index=%s: %s",
                    rejection.reason,
                    message.topic,
                    message.partition,
                    message.offset,
                    rejection.index,
                    rejection.detail,
                )
            records = [
                (self.dlq, key, dlq_record(bad, message), None) for bad in decoded.rejections
            ]
            await self.delivery.deliver(records)
        by_account: dict[str, tuple[list[Event], list[dict[str, Any]]]] = {}
        for event, source in zip(decoded.events, decoded.sources, strict=True):
            events, sources = by_account.setdefault(event.account_id, ([], []))
            events.append(event)
            sources.append(source)
        for account, (events, sources) in by_account.items():
            account_key = account.encode()
            home = partition_for(account_key, self.partitions)
            if message.topic == self.settings.repartition_topic:
                origin = forwarded_from(message)
            elif home == message.partition:
                origin = (message.partition, (message.offset, 0))
            else:
                metrics.REPARTITIONED.inc(len(events))
                # the original timestamp travels along: latency is measured from it
                for part, batch in enumerate(encode_batches(sources, self.forward_limit)):
                    header = f"{message.partition}:{message.offset}:{part}".encode()
                    await self.repartition.send(
                        key=account_key,
                        value=batch,
                        partition=home,
                        timestamp=message.timestamp,
                        headers=[(SOURCE_HEADER, header)],
                    )
                continue
            await self.process_account(account, account_key, events, message.timestamp, origin)
        metrics.MESSAGES.inc()
        metrics.LAST_MESSAGE.set(time.time())

    async def process_account(
        self,
        account_id: str,
        account_key: bytes,
        events: list[Event],
        sent_at: float,
        origin: Source | None,
    ) -> None:
        """Apply an account's events in order, publish what they lead to, then keep the
        account to save; events of an input message the account holds already are skipped."""
        account = self.accounts.load(account_id, account_key)
        if origin is not None and not account.advance(*origin):
            metrics.REREAD.inc(len(events))
            return
        applied = apply_events(self.detector, account.state, events)
        # counted once per account and message, not per event
        for event_type, count in applied.by_type.items():
            metrics.EVENTS_BY_TYPE[event_type].inc(count)
        if applied.duplicates:
            metrics.DUPLICATES.inc(applied.duplicates)
        if applied.late:
            metrics.LATE.inc(applied.late)
        self.accounts.publishing_started(account_key)
        try:
            await self.publisher.publish(account_id, applied.outcomes, sent_at)
        except BaseException as error:  # cancelled too: the records may not be on the broker
            self.accounts.publishing_done(error)
            raise
        self.accounts.publishing_done()
        if applied.changed:
            # Saved after the signals are on the broker: state that says "published" never
            # survives a crash that lost the signal.
            await self.accounts.changed(account_key, account)


def register(app: faust.App, agent: Agent, accounts: AccountStore) -> None:
    """Attach the detector agent, and the account store's save and forget, to the app."""

    @app.on_partitions_assigned.connect
    async def reconcile_before_processing(*args: Any, **kwargs: Any) -> None:
        agent.needs_reconcile = True

    @app.on_partitions_revoked.connect
    async def forget_unsaved(*args: Any, **kwargs: Any) -> None:
        _sender, revoked = args
        accounts.forget(revoked)

    cast(transport.Consumer, app.consumer).before_commit = accounts.save

    @app.agent(agent.inputs, name="detector")
    async def detect(stream: faust.StreamT) -> None:
        async for event in stream.events():
            background.message_taken()
            await agent.on_message(event.message, event.key, event.value)

"""The Faust agent: decode -> route to the account's partition -> table state -> decide -> send."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import faust
import orjson
from aiokafka.errors import KafkaError
from faust.types import TP

from streams.clock import wall_clock
from streams.domain.decide import Detector, Outcome
from streams.domain.state import AccountState
from streams.events import Event, Rejection, decode, encode_batches
from streams.io import kafka_security, metrics, transport
from streams.io.ledger import Ledger
from streams.io.reconcile import reconcile
from streams.io.topics import partition_for
from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# Kept of a rejected input in its DLQ record, so that the record itself stays well under
# the 1 MB a Kafka broker accepts by default, even after JSON escaping.
DLQ_RAW_LIMIT = 128 * 1024
SEND_RETRY_MAX_SECONDS = 10.0
# Forwarded batches stay under Kafka's default 1 MB message limit (and Faust's producer's).
FORWARD_LIMIT = 900_000
# Decoded states of the accounts seen last, so that a busy account is not decoded per message.
STATE_CACHE_ACCOUNTS = 10_000
# Changed accounts kept unsaved at most; more are saved at once. Bounds the memory they hold
# and the burst of changelog writes at a commit.
UNSAVED_ACCOUNTS = 5_000
SAVE_SLICE = 32  # accounts saved between turns of the event loop
SUMMARY_SLICE = 500  # stored states summarized between turns of the event loop
# The changelog's producer batches: a commit's account states in a few produce requests.
CHANGELOG_BATCH_BYTES = 256 * 1024
CHANGELOG_LINGER_MS = 5
# A send that fails with these is sent again; anything else is a bug and stops the worker.
SEND_ERRORS = (KafkaError, TimeoutError, ConnectionError)
# topic, key, value and partition (None: the topic's partitioner picks it)
Record = tuple[faust.TopicT, bytes | None, bytes, int | None]
# A forwarded batch names the input message it came from: "partition:offset:part".
SOURCE_HEADER = "x-expansion-source"
# (input partition, (offset, part)): where on the input topic an account's events were read
Source = tuple[int, tuple[int, int]]


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
        {
            "reason": rejection.reason,
            "detail": rejection.detail,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "index": rejection.index,
            "raw": raw,
            "raw_encoding": encoding,
            "raw_size": len(rejection.raw),
            "raw_truncated": truncated,
        }
    )


def forwarded_from(message: Any) -> Source | None:
    """The input position a forwarded batch names (None for one forwarded by hand)."""
    for name, value in message.headers or ():
        if name == SOURCE_HEADER:
            partition, offset, part = (int(n) for n in value.split(b":"))
            return partition, (offset, part)
    return None


async def in_slices(items: Iterable[T], size: int) -> AsyncIterator[T]:
    """The items, with a turn of the event loop before every `size`-th: long work over many
    accounts must not hold up the agent, and every message, until it is done."""
    for n, item in enumerate(items):
        if n % size == size - 1:
            await asyncio.sleep(0)
        yield item


async def summarize(values: Iterable[bytes]) -> list[tuple[int, float | None, dict[str, float]]]:
    """(size, clock, {trigger: published at}) of each stored account state.

    In slices: 100,000 accounts with a month of history take about 0.6 s to decode.
    """
    return [
        (len(value), *AccountState.summary(value))
        async for value in in_slices(values, SUMMARY_SLICE)
    ]


class Pipeline:
    """Processes one input message at a time; the account table is the only state."""

    def __init__(
        self, app: faust.App, settings: Settings, detector: Detector, ledger: Ledger
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.ledger = ledger
        self.partitions = settings.topic_partitions
        self.broker_failing = False
        # Set when partitions are assigned: the ledger is reconciled before the next message.
        self.needs_reconcile = True
        # account key -> (the value last written to the table, that value decoded). An
        # entry is used only while the table still holds that very object: after a
        # rebalance or a recovery the table holds another, and the state is decoded anew.
        self.states: OrderedDict[bytes, tuple[bytes, AccountState]] = OrderedDict()
        # account key -> state of accounts changed since the table was last written.
        # save_states writes them just before Faust commits input offsets, so an account
        # is encoded and sent to the changelog once per commit, not once per message.
        self.unsaved: dict[bytes, AccountState] = {}
        self.saving: dict[bytes, AccountState] = {}  # being written meanwhile
        self.save_lock = asyncio.Lock()
        # The table's changelog has a producer of its own: the burst of state writes at a
        # commit would hold up, in Faust's producer, the signals sent behind it.
        self.changelog_producer = app.transport.create_producer()
        self.changelog_producer.max_batch_size = CHANGELOG_BATCH_BYTES
        self.changelog_producer.linger_ms = CHANGELOG_LINGER_MS
        app.add_dependency(self.changelog_producer)  # started and stopped with the app

        def raw_topic(*names: str) -> faust.TopicT:
            return app.topic(*names, key_serializer="raw", value_serializer="raw")

        self.inputs = raw_topic(settings.topic_events, settings.repartition_topic)
        self.repartition = raw_topic(settings.repartition_topic)
        self.signals = raw_topic(settings.topic_signals)
        self.decisions = raw_topic(settings.topic_decisions)
        self.dlq = raw_topic(settings.topic_dlq)
        self.accounts = app.Table(
            "accounts",
            default=None,
            partitions=self.partitions,
            key_type=bytes,  # bytes types make Faust use the raw codec, in and out
            value_type=bytes,
            help="Each account's state as one compact value (streams.domain.state)",
        )

    async def on_message(self, message: Any, key: bytes | None, value: bytes | None) -> None:
        """Decode one message and process each account's events where its state lives."""
        if self.needs_reconcile:
            await reconcile(
                self.ledger,
                self.settings.kafka_bootstrap or "",
                self.settings.topic_signals,
                tansu=self.settings.embedded_broker,
                **kafka_security.aiokafka_kwargs(self.settings),
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
            await self.deliver(records)
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
                for part, batch in enumerate(encode_batches(sources, FORWARD_LIMIT)):
                    header = f"{message.partition}:{message.offset}:{part}".encode()
                    await self.repartition.send(
                        key=account_key,
                        value=batch,
                        partition=home,
                        timestamp=message.timestamp,
                        headers=[(SOURCE_HEADER, header)],
                    )
                continue
            await self.process_account(account, events, message.timestamp, origin)
        metrics.MESSAGES.inc()
        metrics.LAST_MESSAGE.set(time.time())

    async def process_account(
        self,
        account: str,
        events: list[Event],
        sent_at: float,
        origin: Source | None,
    ) -> None:
        """Apply an account's events in order, publish what they lead to, then save state.

        The state remembers the input position it has applied up to: the table's changelog
        runs ahead of the committed input offsets, so after a crash or a rebalance the next
        owner reads again messages its restored state already holds, and skips them.
        """
        account_key = account.encode()
        state = self.load(account, account_key)
        if origin is not None:
            source, position = origin
            if position <= state.inputs.get(source, (-1, -1)):
                metrics.REREAD.inc(len(events))
                return
            state.inputs[source] = position
        apply = self.detector.apply
        outcomes = [apply(state, event) for event in events]
        # counted once per account and message, not per event
        by_type: Counter[str] = Counter()
        duplicates = late = 0
        for event, outcome in zip(events, outcomes, strict=True):
            if outcome.duplicate:
                duplicates += 1
            else:
                by_type[event.type] += 1
                late += outcome.late
        for event_type, count in by_type.items():
            metrics.EVENTS_BY_TYPE[event_type].inc(count)
        if duplicates:
            metrics.DUPLICATES.inc(duplicates)
        if late:
            metrics.LATE.inc(late)
        await self.publish(account_key, outcomes, sent_at)
        if duplicates == len(events):
            return  # a duplicate changes nothing
        # Saved after the signals are on the broker: state that says "published" never
        # survives a crash that lost the signal.
        self.unsaved[account_key] = state
        if len(self.unsaved) >= UNSAVED_ACCOUNTS:
            await self.save_states()

    async def save_states(self) -> None:
        """Write the accounts changed since the last save to the table and its changelog.

        Called just before Faust flushes its producer and commits input offsets: the state
        on the changelog is never behind a committed offset. The changelog records go to
        their own producer, not through Faust's send buffer, whose backlog would hold up the
        agent (and every signal) until it drained; they are acked before this returns.
        """
        async with self.save_lock:
            self.saving, self.unsaved = self.unsaved, {}
            changelog = self.accounts.changelog_topic
            records: list[Record] = []
            # the agent goes on between slices
            async for account_key, state in in_slices(list(self.saving.items()), SAVE_SLICE):
                if account_key not in self.saving:
                    continue  # its partition was revoked meanwhile (forget)
                value = state.to_bytes()
                self.accounts.data[account_key] = value
                self.states[account_key] = (value, state)
                self.states.move_to_end(account_key)
                home = partition_for(account_key, self.partitions)
                records.append((changelog, account_key, value, home))
            await self.deliver(records, self._send_changelog)
            self.saving = {}
            while len(self.states) > STATE_CACHE_ACCOUNTS:
                self.states.popitem(last=False)

    def forget(self, revoked: Iterable[TP]) -> None:
        """Drop the unsaved states of input partitions taken away. Their offsets were not
        committed after those changes, so the partitions' next owner reads them again."""
        inputs = {self.settings.topic_events, self.settings.repartition_topic}
        partitions = {tp.partition for tp in revoked if tp.topic in inputs}
        for unsaved in (self.unsaved, self.saving):
            revoked_keys = [
                key for key in unsaved if partition_for(key, self.partitions) in partitions
            ]
            for account_key in revoked_keys:
                del unsaved[account_key]
                self.states.pop(account_key, None)

    def load(self, account: str, account_key: bytes) -> AccountState:
        """The account's state: as last changed here, or as the table holds it."""
        unsaved = self.unsaved.get(account_key) or self.saving.get(account_key)
        if unsaved is not None:
            return unsaved
        stored = self.accounts.get(account_key)
        cached = self.states.get(account_key)
        if cached is not None and stored is cached[0]:
            self.states.move_to_end(account_key)
            return cached[1]
        return AccountState.from_bytes(stored) if stored else AccountState(account)

    async def publish(self, account_key: bytes, outcomes: list[Outcome], sent_at: float) -> None:
        records: list[Record] = []
        signals: list[tuple[dict[str, Any], int]] = []  # and its index in records
        serving = None
        for outcome in outcomes:
            for decision in outcome.decisions:
                metrics.DECISIONS.labels(decision["reason"]).inc()
                records.append((self.decisions, account_key, orjson.dumps(decision), None))
            for signal in outcome.signals:
                if await self.ledger.published(signal["signal_id"]):
                    metrics.SIGNALS_DEDUPLICATED.inc()
                    continue
                signal = {**signal, "emitted_at": wall_clock()}
                signals.append((signal, len(records)))
                records.append((self.signals, account_key, orjson.dumps(signal), None))
            serving = outcome.serving or serving
        placed = await self.deliver(records) if records else []
        for signal, index in signals:
            sent = placed[index]
            partition, offset = getattr(sent, "partition", None), getattr(sent, "offset", None)
            await self.ledger.mark_published(signal["signal_id"], partition, offset)
            metrics.SIGNALS.labels(signal["trigger"], signal["route"]).inc()
            metrics.LATENCY.observe(max(0.0, time.time() - sent_at))
            log.info(
                "signal %s account=%s trigger=%s level=%g route=%s score=%d",
                signal["signal_id"],
                signal["account_id"],
                signal["trigger"],
                signal["level"],
                signal["route"],
                signal["score"],
            )
        if serving is not None:
            sent_now = {signal["signal_id"]: signal for signal, _ in signals}
            await self.ledger.serve(sent_now.get(serving["signal_id"], serving))

    async def deliver(
        self, records: Sequence[Record], send: Callable[[Record], Awaitable[Any]] | None = None
    ) -> list[Any]:
        """Send records and wait until the broker has acked each; a failed send is sent again.

        Returns each record's metadata (partition, offset) in order.

        While the broker fails, processing waits here: the input offset is not committed,
        and nothing after these records is sent.
        """
        send = send or self._send
        sent = [(record, await self._sent(send, record)) for record in records]
        placed = []
        for record, delivery in sent:
            delay = 0.5
            while True:
                try:
                    placed.append(await delivery)
                    break
                except SEND_ERRORS as error:
                    topic = record[0].get_topic_name()
                    metrics.BROKER_ERRORS.labels(topic).inc()
                    metrics.PUBLISH_RETRIES.labels(topic).inc()
                    if not self.broker_failing:
                        self.broker_failing = True
                        log.warning(
                            "send to %s failed (%s); retrying until the broker acks it",
                            topic,
                            error.__class__.__name__,
                        )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, SEND_RETRY_MAX_SECONDS)
                    delivery = await self._sent(send, record)
            if self.broker_failing:
                self.broker_failing = False
                log.info("sends to the broker succeed again")
        return placed

    @staticmethod
    async def _send(record: Record) -> Any:
        topic, key, value, partition = record
        return await topic.send(key=key, value=value, partition=partition)

    async def _send_changelog(self, record: Record) -> Any:
        topic, key, value, partition = record
        return await self.changelog_producer.send(
            topic.get_topic_name(), key, value, partition, None, None
        )

    @staticmethod
    async def _sent(send: Callable[[Record], Awaitable[Any]], record: Record) -> Any:
        """The delivery of send(record): a future of its metadata, failed if the send was."""
        try:
            return await send(record)
        except SEND_ERRORS as error:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed

    async def summaries(self) -> list[tuple[int, float | None, dict[str, float]]]:
        """(size, clock, {trigger: published at}) of every account this worker holds."""
        return await summarize(list(self.accounts.data.values()))


def register(app: faust.App, pipeline: Pipeline) -> None:
    """Attach the detector agent to the app."""

    @app.on_partitions_assigned.connect
    async def reconcile_before_processing(*args: Any, **kwargs: Any) -> None:
        pipeline.needs_reconcile = True

    @app.on_partitions_revoked.connect
    async def forget_unsaved(*args: Any, **kwargs: Any) -> None:
        _sender, revoked = args
        pipeline.forget(revoked)

    cast(transport.Consumer, app.consumer).before_commit = pipeline.save_states

    @app.agent(pipeline.inputs, name="detector")
    async def detect(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await pipeline.on_message(event.message, event.key, event.value)

"""Close the gap between the broker and the ledger: records on a topic but not yet marked."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.clock import parse_time
from streams.io.ledger import Ledger
from streams.io.sla import ResponseSla, member
from streams.io.transport import end_offsets

log = logging.getLogger(__name__)
READ_PATIENCE_SECONDS = 60.0


class _Signals:
    """The signals topic's records in the ledger: by signal_id, pending the response SLA."""

    kind = "signals"

    def __init__(self, ledger: Ledger, sla: ResponseSla | None) -> None:
        self.ledger, self.sla = ledger, sla

    async def mark(self, record: dict[str, Any], partition: int, offset: int) -> bool:
        signal_id = record.get("signal_id")
        if not isinstance(signal_id, str):
            return False
        marked = not await self.ledger.published(signal_id)
        pending = None
        if marked and self.sla is not None and _is_signal(record):
            pending = self.sla.pending(record, parse_time(record["emitted_at"]))
        await self.ledger.mark_published(signal_id, partition, offset, pending)
        return marked


class _Outcomes:
    """The outcomes topic's records in the ledger: by (signal_id, stage), answering the SLA."""

    kind = "outcomes"

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def mark(self, record: dict[str, Any], partition: int, offset: int) -> bool:
        signal_id, stage = record.get("signal_id"), record.get("stage")
        if not isinstance(signal_id, str) or not isinstance(stage, str):
            return False
        key = f"{signal_id}:{stage}"
        marked = not await self.ledger.answered(key)
        route, trigger = record.get("route"), record.get("trigger")
        answered = member(signal_id, str(route), str(trigger))
        await self.ledger.mark_answered(key, partition, offset, answered)
        return marked


def _is_signal(record: dict[str, Any]) -> bool:
    fields = ("route", "segment", "trigger", "emitted_at")
    return all(isinstance(record.get(name), str) for name in fields)


async def reconcile(
    ledger: Ledger,
    bootstrap: str,
    topic: str,
    *,
    tansu: bool,
    outcomes: bool = False,
    sla: ResponseSla | None = None,
    **client: Any,
) -> int:
    """Mark in the ledger every signal (`outcomes`: outcome record) on `topic` after the
    ledger's checkpoints.

    A worker that stops between the broker's ack of a record and its ledger mark leaves
    such a record behind; whoever processes that account next would publish it again.
    Run before processing newly assigned partitions. Returns how many records it marked.
    `topic` may have any number of partitions (it may be someone else's); `tansu` says the
    broker is Tansu (streams.io.transport). With `sla`, a signal marked here enters the
    response SLA's pending set as its publisher would have entered it.
    """
    kind = _Outcomes(ledger) if outcomes else _Signals(ledger, sla)
    checkpoints = await ledger.checkpoints(kind.kind)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **client
    )
    await consumer.start()
    marked = 0
    try:
        # The consumer's own metadata holds only the topics it was given.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends = await end_offsets(consumer, assigned, tansu=tansu)
        left = {}
        for tp in assigned:
            start = checkpoints.get(tp.partition, -1) + 1
            if start < ends[tp]:
                consumer.seek(tp, start)
                left[tp] = ends[tp]
        deadline = time.monotonic() + READ_PATIENCE_SECONDS
        while left and time.monotonic() < deadline:
            batches = await consumer.getmany(*left, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    found = _json_object(record.value)
                    if found is None or record.offset >= left.get(tp, -1):
                        continue
                    marked += await kind.mark(found, tp.partition, record.offset)
            for tp in list(left):
                if await consumer.position(tp) >= left[tp]:
                    del left[tp]
        if left:
            log.warning("ledger: could not read %s to its end; going on", topic)
    finally:
        await consumer.stop()
    if marked:
        log.warning(
            "ledger: marked %d %s found on %s but not in the ledger", marked, kind.kind, topic
        )
    return marked


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    try:
        found = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None

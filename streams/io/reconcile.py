"""Close the gap between the broker and the ledger: signals on the topic but not yet marked."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.io.ledger import Ledger
from streams.io.transport import end_offsets

log = logging.getLogger(__name__)
READ_PATIENCE_SECONDS = 60.0


async def reconcile(
    ledger: Ledger, bootstrap: str, topic: str, *, tansu: bool, **client: Any
) -> int:
    """Mark in the ledger every signal on `topic` after the ledger's checkpoints.

    A worker that stops between the broker's ack of a signal and its ledger mark leaves
    such a signal behind; whoever processes that account next would publish it again.
    Run before processing newly assigned partitions. Returns how many signals it marked.
    `topic` may have any number of partitions (it may be someone else's); `tansu` says the
    broker is Tansu (streams.io.transport).
    """
    checkpoints = await ledger.checkpoints()
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
                    signal_id = _signal_id(record.value)
                    if signal_id is None or record.offset >= left.get(tp, -1):
                        continue
                    if not await ledger.published(signal_id):
                        marked += 1
                    await ledger.mark_published(signal_id, tp.partition, record.offset)
            for tp in list(left):
                if await consumer.position(tp) >= left[tp]:
                    del left[tp]
        if left:
            log.warning("ledger: could not read %s to its end; going on", topic)
    finally:
        await consumer.stop()
    if marked:
        log.warning("ledger: marked %d signals found on %s but not in the ledger", marked, topic)
    return marked


def _signal_id(value: bytes | None) -> str | None:
    try:
        signal = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    found = signal.get("signal_id") if isinstance(signal, dict) else None
    return found if isinstance(found, str) else None

"""Faust transports: the aiokafka driver, fetching input records soon, handing them out in order.

In order. After a rebalance Faust restores the tables, resumes the input partitions and only
then seeks them to their committed offsets, while its fetch loop is already running. Records
fetched before the seek are handed to the agent after it, and a fetch that started before
the seek can return records after it that Faust then drops; either way records are taken
from the fetcher and never processed. Faust notes the jump in offsets as a gap and commits
past it (the records are lost), or its read offset runs ahead of them and it can never
commit past them (faust-streaming #596 looks like this). Here, every input partition's next
offset is known (from the committed offset at a seek, then from each record handed out); a
record past it makes the partition seek back to it, and the rest of that batch is dropped
and fetched again. Records the agent already processed come again after a seek; the account
state's input position skips them. A jump that is still there after a seek back is a real
gap (a transaction marker, compaction) and is accepted.

Short fetch wait (both brokers). aiokafka sends one fetch at a time to a broker, and leaves
out of it a partition whose fetched records are not all handed out yet (after 0.1 s). A
fetch of idle partitions alone (the repartition topic, Faust's leader topic) is held by the
broker until its wait runs out, and no input partition of that broker is fetched meanwhile.
Faust asks for 1.5 s: on Apache Kafka at 1,250 single events/s, events waited 1.2-1.5 s
(p50) to be fetched, cycle after cycle, with the worker at 58-71 % of a core. The worker asks
for 20 ms: Kafka still answers a fetch at its first record, and an idle worker asks a broker
50 times a second.

Idempotent producer (Apache Kafka and other brokers that offer it). A send the producer
retries after a lost ack is written once, not twice.

Tansu only (TansuTransport, chosen by EMBEDDED_BROKER=1). Tansu has no idempotent producer,
and two of its defects need a way round:
- It answers a fetch when the fetch's wait runs out, not as soon as records arrive: with the
  short wait above, an event waits at most 20 ms for it.
- End offsets from a fetch. Tansu answers ListOffsets(latest) with the base offset + 1 of a
  partition's last record batch, short of its end when that batch holds several records,
  and Faust's table recovery would stop there and lose the last states written. A fetch of
  that last batch answers the partition's high watermark (`tansu_end_offsets`). On Kafka,
  ListOffsets is exact and Faust recovers its tables by its standard path.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Set
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message

from streams.io.topics import FETCH_MAX_WAIT_MS

log = logging.getLogger(__name__)

KAFKA_SCHEME = "expansion-kafka"
TANSU_SCHEME = "expansion-tansu"


class Consumer(driver.Consumer):
    # Called just before input offsets are committed: the app saves what they cover.
    before_commit: Callable[[], Awaitable[None]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.next_offsets: dict[TP, int] = {}  # input partition -> offset to hand out next
        self.sought: set[TP] = set()  # partitions sought back to their next offset

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        if self.before_commit is not None:
            await self.before_commit()  # sends go to the producer, which Faust flushes next
        return await super()._commit_offsets(offsets, start_new_transaction)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def committed_offset(self, tp: TP) -> int | None:
        """The group's committed offset of a partition, as of the last seek or commit."""
        return self._committed_offset.get(tp)

    def is_input(self, tp: TP) -> bool:
        """An agent's input partition (acked and committed), not a table's changelog."""
        return bool(self.app.topics.acks_enabled_for(tp.topic))

    async def perform_seek(self) -> None:
        # A stopped flow makes the fetch loop leave the record it is delivering at once,
        # before the seek (a broker round trip) ends; recovery resumes the flow right after.
        self.stop_flow()
        await super().perform_seek()
        committed = {tp: offset for tp, offset in self._read_offset.items() if self.is_input(tp)}
        self.next_offsets = {tp: offset for tp, offset in committed.items() if offset is not None}
        self.sought.clear()

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        for tp in revoked:
            self.next_offsets.pop(tp, None)
            self.sought.discard(tp)
        await super().on_partitions_revoked(revoked)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        dropped: set[TP] = set()  # partitions whose rest of this batch is fetched again
        async for tp, message in super().getmany(timeout):
            if not self.is_input(tp):
                yield tp, message  # a changelog: recovery reads it as it comes
                continue
            if tp in dropped:
                continue
            expected = self.next_offsets.get(tp)
            if expected is not None and message.offset < expected:
                continue  # handed out already
            if expected is not None and message.offset > expected:
                if tp in self.sought:
                    log.info("offsets %s-%s of %s are a gap", expected, message.offset - 1, tp)
                else:
                    log.info(
                        "%s: offset %s came before %s; fetching again", tp, message.offset, expected
                    )
                    await self.seek_wait({tp: expected})
                    self.sought.add(tp)
                    dropped.add(tp)
                    continue
            self.sought.discard(tp)
            self.next_offsets[tp] = message.offset + 1
            self._read_offset[tp] = message.offset  # what Faust's own check compares with
            yield tp, message


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class TansuConsumerThread(ConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        return await tansu_end_offsets(self._ensure_consumer(), partitions)


async def end_offsets(
    consumer: AIOKafkaConsumer, partitions: Iterable[TP], *, tansu: bool
) -> dict[TP, int]:
    """Each partition's end offset: ListOffsets(latest), or on Tansu `tansu_end_offsets`."""
    if tansu:
        return await tansu_end_offsets(consumer, partitions)
    return dict(await consumer.end_offsets(list(partitions)))


async def tansu_end_offsets(consumer: AIOKafkaConsumer, partitions: Iterable[TP]) -> dict[TP, int]:
    """Each partition's end offset, as a fetch of its last record batch answers it."""
    client = consumer._client
    ends = dict(await consumer.end_offsets(list(partitions)))  # at least that batch's start + 1
    # leader -> topic -> [(partition, offset, max bytes)] to fetch
    wanted: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for tp, end in ends.items():
        leader = client.cluster.leader_for_partition(tp)
        if end > 0 and leader is not None and leader >= 0:
            wanted[leader][tp.topic].append((tp.partition, end - 1, 1))
        elif end > 0:
            log.warning("no leader known for %s; its listed end offset may be short", tp)
    for leader, topics in wanted.items():
        # at most one byte of records: the answer that matters is the high watermark (Tansu
        # answers a fetch with no wait with no partitions at all)
        request = FetchRequest(FETCH_MAX_WAIT_MS, 1, 1, 0, list(topics.items()))
        response = await client.send(leader, request)
        unanswered = {TP(topic, p) for topic, parts in topics.items() for p, _, _ in parts}
        for topic, answers in response.topics:
            for partition, error_code, highwater, *_ in answers:
                tp = TP(topic, partition)
                if error_code == 0:
                    unanswered.discard(tp)
                    ends[tp] = max(ends[tp], highwater)
        if unanswered:
            log.warning(
                "no high watermark for %s; their listed end offsets may be short",
                sorted(unanswered),
            )
    return ends


async def topic_end_offsets(
    bootstrap: str, topic: str, partitions: Iterable[int], *, tansu: bool, **client: Any
) -> dict[int, int]:
    """`end_offsets` of a topic's partitions, by partition number, with a consumer of its own."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await end_offsets(consumer, tps, tansu=tansu)
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


class TansuConsumer(Consumer):
    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class KafkaProducer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class KafkaTransport(driver.Transport):
    Consumer = Consumer
    Producer = KafkaProducer


class TansuTransport(driver.Transport):
    Consumer = TansuConsumer


TRANSPORTS.aliases[KAFKA_SCHEME] = f"{__name__}:KafkaTransport"
TRANSPORTS.aliases[TANSU_SCHEME] = f"{__name__}:TansuTransport"

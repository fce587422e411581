"""The real worker under measurement: throughput, signal latency at half load, memory/account."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from bench.infra import (
    BenchError,
    CpuMeter,
    Worker,
    delete_prefix,
    rss_bytes,
    say,
    steady_rate,
    wait_idle,
)
from bench.inputs import NEW_ACCOUNT_EVENTS, FastProducer, Inputs, create_topics, new_accounts
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.events import decode
from streams.io.records import Account, encode
from streams.io.topics import partition_for
from streams.io.transport import topic_end_offsets
from streams.rules import load
from streams.settings import Settings

IDLE_SETTLE = 3.0  # seconds a ready worker is left alone before its memory is read
TANSU_READER_FETCH_WAIT_MS = 5


@dataclass
class Context:
    """The run's broker, Redis and scratch space, shared by every phase."""

    run_id: str
    bootstrap: str
    broker_pid: int
    tansu: bool  # the broker is Tansu: the worker runs with EMBEDDED_BROKER=1
    redis_url: str
    partitions: int
    workdir: Path

    def worker(self, name: str, topic_events: str) -> Worker:
        return Worker.start(
            name,
            self.bootstrap,
            self.redis_url,
            topic_events,
            self.partitions,
            self.workdir,
            redis_prefix=f"{name}:",
            tansu=self.tansu,
        )

    def retire(self, worker: Worker) -> None:
        worker.stop()
        delete_prefix(self.redis_url, worker.env["REDIS_PREFIX"])


def throughput(
    ctx: Context, name: str, topic: str, expected: int, interval: float
) -> dict[str, Any]:
    """Run a fresh worker over a pre-produced topic; events per second once it is under way."""
    worker = ctx.worker(name, topic)
    try:
        ready_s = worker.wait_ready()
        cpu = CpuMeter({"worker": worker.pid, "broker": ctx.broker_pid})
        cpu.start()
        samples = worker.wait_processed(expected, interval)
        shares = cpu.read()
        eps = steady_rate(samples, expected)
        rss = rss_bytes(worker.pid)
    finally:
        ctx.retire(worker)
    return {
        "eps": eps,
        "ready_s": round(ready_s, 2),
        "samples": len(samples),
        "cpu": shares,
        "rss_mb": round(rss / 2**20, 1),
    }


def reader_config(bootstrap: str, topic: str, tansu: bool) -> dict[str, Any]:
    """The signal reader's librdkafka settings on Tansu or on Kafka.

    Kafka answers a fetch as soon as a record arrives (fetch.min.bytes 1), so librdkafka's
    fetch wait (500 ms) adds nothing to what is measured; 5 ms there made the broker answer
    an empty fetch 200 times a second. Tansu answers only when the wait runs out: a short
    one there, so that the reader adds little to what it measures.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-reader",
        "enable.auto.commit": False,
        "fetch.min.bytes": 1,
    }
    if tansu:
        config["fetch.wait.max.ms"] = TANSU_READER_FETCH_WAIT_MS
    return config


class SignalReader(threading.Thread):
    """Reads a signals topic from the beginning, noting when each signal arrived."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, tansu: bool) -> None:
        super().__init__(daemon=True, name="signal-reader")
        self._tansu = tansu
        # Assigned, not subscribed: a librdkafka group join is slow on Tansu.
        self._consumer = Consumer(reader_config(bootstrap, topic, tansu))
        self._servers, self._topic, self._partitions = bootstrap, topic, partitions
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self._done = threading.Event()
        # Set once the signals already on the topic are read: sends before it would be
        # measured with the reader's own start-up in their latency.
        self.caught_up = threading.Event()
        self.arrivals: list[tuple[str, float]] = []  # source_event_id, arrival (epoch s)
        self.error: str | None = None

    def run(self) -> None:
        try:
            # partition -> offset of its last signal when the reader started
            ends = topic_end_offsets(
                self._servers, self._topic, range(self._partitions), tansu=self._tansu
            )
            behind = {p: end - 1 for p, end in asyncio.run(ends).items() if end > 0}
            while not self._done.is_set():
                if not behind:
                    self.caught_up.set()
                message = self._consumer.poll(0.05)
                if message is None:
                    continue
                arrived = time.time()
                error = message.error()
                if error is not None:
                    if error.fatal():
                        self.error = str(error)
                        return
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset >= behind.get(partition, offset + 1):
                    del behind[partition]
                signal = orjson.loads(message.value() or b"{}")
                self.arrivals.append((signal["source_event_id"], arrived))
        except (KafkaException, KafkaError) as error:
            self.error = str(error)
        finally:
            self._consumer.close()

    def finish(self) -> None:
        self._done.set()
        self.join(10)


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency(
    ctx: Context, name: str, inputs: Inputs, rate: float, seconds: float, linger_ms: float
) -> dict[str, Any]:
    """Send-to-arrival time of signals, with simulated events offered at `rate` per second.

    A fresh worker first takes the simulation up to its last `rate * seconds` events as
    batch envelopes (fast, not measured), so that its accounts have the history that makes
    triggers fire; those last events are then sent one per message at a steady pace, and
    every signal they fire is matched to its send time through its source_event_id.
    """
    topic = f"{name}-events"
    create_topics(ctx.bootstrap, [topic], ctx.partitions)
    worker = ctx.worker(name, topic)
    # The linger is part of what is measured: a send waits for it. Tansu's fetches cost more
    # the more record batches a partition holds, so smaller batches load it more (README).
    producer = FastProducer(ctx.bootstrap, linger_ms=linger_ms)
    reader: SignalReader | None = None
    paced = min(len(inputs.simulation) // 2, max(1, int(rate * seconds)))
    history, events = inputs.latency_split(paced, ctx.partitions)
    warm = len(inputs.simulation) - paced
    try:
        worker.wait_ready()
        say(f"  warming up {name} with {warm:,} events of history (batches)")
        producer.send_all(topic, history)
        worker.wait_processed(warm, interval=0.5)
        settle_s = wait_idle(worker.pid)
        encoded = [
            (partition_for(e["account_id"].encode(), ctx.partitions), e, orjson.dumps(e))
            for e in events
        ]
        reader = SignalReader(ctx.bootstrap, worker.env["TOPIC_SIGNALS"], ctx.partitions, ctx.tansu)
        reader.start()
        if not reader.caught_up.wait(60):
            raise BenchError(f"the signal reader did not catch up: {reader.error or 'timeout'}")
        say(f"  offering {len(events):,} events at {rate:,.0f}/s for {len(events) / rate:.0f}s")
        cpu = CpuMeter({"worker": worker.pid, "broker": ctx.broker_pid})
        cpu.start()
        sent_at: dict[str, float] = {}
        started = time.monotonic()
        sent = 0
        while sent < len(encoded):
            due = min(len(encoded), int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                partition, event, value = encoded[sent]
                sent_at.setdefault(event["event_id"], time.time())
                producer.send(topic, partition, event["account_id"].encode(), value)
                sent += 1
            producer.poll()
            time.sleep(0.002)
        offered_s = time.monotonic() - started
        producer.flush()
        worker.wait_processed(len(inputs.simulation), interval=0.1)
        drain_s = time.monotonic() - started - offered_s
        shares = cpu.read()
        time.sleep(2.0)  # the last signals on their way
        reader.finish()
        if reader.error:
            say(f"  signal reader stopped on an error: {reader.error}")
        first_send = min(sent_at.values(), default=0.0)
        timeline = sorted(
            (sent_at[source] - first_send, (arrived - sent_at[source]) * 1000)
            for source, arrived in reader.arrivals
            if source in sent_at
        )
        latencies = [latency for _, latency in timeline]
    finally:
        if reader is not None and reader.is_alive():
            reader.finish()
        ctx.retire(worker)
    result: dict[str, Any] = {
        "offered_eps": round(rate, 1),
        "linger_ms": linger_ms,
        "achieved_eps": round(len(events) / offered_s, 1),
        "events": len(events),
        "signals_matched": len(latencies),
        "signals_total": len(reader.arrivals),
        "settle_s": round(settle_s, 2),
        "drain_s": round(drain_s, 2),
        "cpu": shares,
        # (seconds into the paced phase the event was sent, its signal's latency in ms)
        "timeline": [(round(at, 2), round(ms, 1)) for at, ms in timeline],
    }
    if latencies:
        result.update(
            p50_ms=percentile(latencies, 0.5),
            p99_ms=percentile(latencies, 0.99),
            max_ms=max(latencies),
            mean_ms=statistics.fmean(latencies),
        )
    return result


def state_memory(ctx: Context, name: str, accounts: int) -> dict[str, Any]:
    """Growth of the worker's resident memory per account, for `accounts` new accounts.

    The accounts arrive in two halves. The figure is the growth over all of them, from the
    idle worker; the growth over the second half alone is kept beside it: memory that the
    first half's processing took and freed (producer buffers, allocator arenas) is reused
    then, so it is closer to what one more account costs.
    """
    topic = f"{name}-events"
    create_topics(ctx.bootstrap, [topic], ctx.partitions)
    half = accounts // 2
    waves = [
        new_accounts(0, half, ctx.partitions, name),
        new_accounts(half, accounts - half, ctx.partitions, name),
    ]
    worker = ctx.worker(name, topic)
    producer = FastProducer(ctx.bootstrap)
    try:
        worker.wait_ready()
        time.sleep(IDLE_SETTLE)
        wait_idle(worker.pid)
        before = rss_bytes(worker.pid)
        say(f"  {name}: idle RSS {before / 2**20:.1f} MiB; feeding {accounts:,} new accounts")
        producer.send_all(topic, waves[0])
        worker.wait_processed(NEW_ACCOUNT_EVENTS * half, interval=0.5)
        wait_idle(worker.pid)
        middle = settled_rss(worker.pid)
        producer.send_all(topic, waves[1])
        worker.wait_processed(NEW_ACCOUNT_EVENTS * accounts, interval=0.5)
        wait_idle(worker.pid)
        after = settled_rss(worker.pid)
    finally:
        ctx.retire(worker)
    return {
        "bytes_per_account": (after - before) / accounts,
        "second_half_bytes_per_account": (after - middle) / (accounts - half),
        "rss_before_mb": round(before / 2**20, 1),
        "rss_middle_mb": round(middle / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "accounts": accounts,
        "state_value_bytes": state_value_size(waves[0][0][2]),
    }


def settled_rss(pid: int, timeout: float = 20.0) -> int:
    """RSS once it has stopped changing by more than 1% a second (or after `timeout`)."""
    previous = rss_bytes(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        current = rss_bytes(pid)
        if abs(current - previous) <= 0.01 * previous:
            return current
        previous = current
    return previous


def state_value_size(envelope: bytes) -> float:
    """Mean size of the table value (compressed, as stored) the detector keeps for the
    accounts in one envelope."""
    settings = Settings()
    detector = Detector(load(settings.rules_file))
    states: dict[str, AccountState] = {}
    for event in decode(envelope).events:
        state = states.setdefault(event.account_id, AccountState(event.account_id))
        detector.apply(state, event)
    return statistics.fmean(
        encode(
            Account(state, {}),
            state.account_id.encode(),
            settings.message_max_bytes,
            settings.account_max_bytes,
        ).size
        for state in states.values()
    )

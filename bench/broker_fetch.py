"""`python -m bench.broker_fetch`: the embedded broker's CPU while records are produced and read.

No worker: a confluent-kafka producer sends small records at a steady rate to a topic of a
fresh Tansu, one per partition in turn, and (with --read) a plain aiokafka consumer reads
them as they come. Every 5 s it prints the share of a core the broker used in those 5 s.
On Tansu that share climbs while the topic fills when the records are read in small record
batches (the producer's linger decides their size); the README's Performance section
(Latency) has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.infra import cpu_seconds, say
from bench.inputs import FastProducer, create_topics
from streams.embedded import EmbeddedBroker

TOPIC = "fetch-probe"
VALUE = b'{"padding": "' + b"x" * 200 + b'"}'


async def read(bootstrap: str, partitions: int, wait_ms: int, stop: threading.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        while not stop.is_set():
            await consumer.getmany(timeout_ms=100)
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_fetch", description=__doc__)
    parser.add_argument("--rate", type=float, default=2400.0, help="records per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--linger-ms", type=float, default=5.0, help="the producer's linger")
    parser.add_argument("--read", action="store_true", help="read the records as they come")
    parser.add_argument("--fetch-wait-ms", type=int, default=20, help="the reader's fetch wait")
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        assert broker.process is not None
        pid = broker.process.pid
        create_topics(broker.bootstrap, [TOPIC], args.partitions)
        stop = threading.Event()
        reader = threading.Thread(
            target=lambda: asyncio.run(
                read(broker.bootstrap, args.partitions, args.fetch_wait_ms, stop)
            )
        )
        if args.read:
            reader.start()
        producer = FastProducer(broker.bootstrap, linger_ms=args.linger_ms)
        say(
            f"producing {args.rate:,.0f} records/s for {args.seconds:g}s, linger "
            f"{args.linger_ms:g} ms, {'read' if args.read else 'not read'}"
        )
        started = last = time.monotonic()
        last_cpu, sent = cpu_seconds(pid), 0
        while (now := time.monotonic()) - started < args.seconds:
            while sent < int((now - started) * args.rate) + 1:
                producer.send(TOPIC, sent % args.partitions, b"key", VALUE)
                sent += 1
            producer.poll()
            if now - last >= 5.0:
                cpu = cpu_seconds(pid)
                share = (cpu - last_cpu) / (now - last)
                say(f"{now - started:5.1f}s: {sent:,} records sent; broker {share:.0%} of a core")
                last, last_cpu = now, cpu
            time.sleep(0.002)
        producer.flush()
        del producer  # closed before the broker stops, so that librdkafka has nothing to report
        stop.set()
        if args.read:
            reader.join()


if __name__ == "__main__":
    main()

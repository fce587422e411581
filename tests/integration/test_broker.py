"""The embedded broker, topic creation and the test clients against a real broker."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from harness import KafkaIO

from streams.embedded import EmbeddedBroker, free_port
from streams.io.topics import ensure_topics, partition_for


def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    async def describe() -> list[Any]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await admin.describe_topics(topics)
        finally:
            await admin.close()

    return {t["topic"]: len(t["partitions"]) for t in asyncio.run(describe())}


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_topics_are_created_with_the_requested_partition_count(
    kafka_bootstrap: str, unique_name
) -> None:
    events, signals = unique_name("events"), unique_name("signals")

    asyncio.run(ensure_topics(kafka_bootstrap, [events, signals], partitions=6))
    asyncio.run(ensure_topics(kafka_bootstrap, [events, signals], partitions=6))  # no-op

    assert partition_counts(kafka_bootstrap, [events, signals]) == {events: 6, signals: 6}


def test_ensure_topics_leaves_existing_topics_alone(kafka_bootstrap: str, unique_name) -> None:
    topic = unique_name("events")
    asyncio.run(ensure_topics(kafka_bootstrap, [topic], partitions=3))

    asyncio.run(ensure_topics(kafka_bootstrap, [topic], partitions=5))

    assert partition_counts(kafka_bootstrap, [topic]) == {topic: 3}


def test_records_round_trip_on_the_default_partitioner(kafka_io: KafkaIO, unique_name) -> None:
    topic = unique_name("events")
    kafka_io.create_topics([topic], partitions=4)
    keys = [f"acct-{i}".encode() for i in range(12)]

    for key in keys:
        kafka_io.produce(topic, b"value-" + key, key=key, flush=False)
    kafka_io.produce(topic, b"unkeyed", partition=2)
    records = kafka_io.consume(topic, until=lambda rs: len(rs) >= 13, timeout=15)

    assert kafka_io.partitions(topic) == [0, 1, 2, 3]
    by_value = {r["value"]: r for r in records}
    assert len(records) == 13
    assert by_value[b"unkeyed"]["partition"] == 2
    assert by_value[b"unkeyed"]["key"] is None
    for key in keys:
        record = by_value[b"value-" + key]
        assert record["key"] == key
        assert record["partition"] == partition_for(key, 4)


def test_consume_returns_what_it_has_when_the_timeout_passes(
    kafka_io: KafkaIO, unique_name
) -> None:
    topic = unique_name("events")
    kafka_io.create_topics([topic], partitions=2)
    kafka_io.produce(topic, b"only", key=b"acct-1")

    records = kafka_io.consume(topic, until=lambda rs: len(rs) >= 2, timeout=2)

    assert [(r["key"], r["value"], r["offset"]) for r in records] == [(b"acct-1", b"only", 0)]


def test_embedded_broker_starts_and_stops(tmp_path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        asyncio.run(ensure_topics(broker.bootstrap, ["t"], partitions=2))
        assert partition_counts(broker.bootstrap, ["t"]) == {"t": 2}
        process = broker.process
        assert process is not None

    assert process.poll() is not None
    assert not accepts_connections(broker.port)
    assert broker.log_path.exists()


def test_broker_command_runs_until_sigterm(tmp_path) -> None:
    port = free_port()
    command = f"import sys; from streams.embedded import main; sys.exit(main(['--port', '{port}']))"
    process = subprocess.Popen(
        [sys.executable, "-c", command],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == f"embedded Kafka broker (Tansu) at 127.0.0.1:{port} — Ctrl-C to stop"
        assert accepts_connections(port)

        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert not accepts_connections(port)
    finally:
        process.kill()

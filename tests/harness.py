"""Test clients for the outside of the system: a Kafka producer/reader and worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.apache_kafka import KafkaBroker
from streams.embedded import BrokerProcess, EmbeddedBroker
from streams.io.topics import ensure_topics
from streams.io.transport import topic_end_offsets

WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_GRACE = 20.0
# The brokers the project starts for tests, by the name TEST_BROKERS gives them.
BROKERS: dict[str, type[BrokerProcess]] = {"tansu": EmbeddedBroker, "kafka": KafkaBroker}


def broker_kinds() -> list[str]:
    """The brokers every broker test runs against: KAFKA_BOOTSTRAP's alone when set, else
    TEST_BROKERS (default "tansu,kafka": the embedded Tansu and an Apache Kafka)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return ["outside"]
    kinds = [kind.strip() for kind in os.environ.get("TEST_BROKERS", "tansu,kafka").split(",")]
    unknown = set(kinds) - set(BROKERS)
    if unknown:
        raise pytest.UsageError(f"TEST_BROKERS: unknown {sorted(unknown)}; known: tansu, kafka")
    return kinds


def app_env(app_id: str) -> dict[str, str]:
    """A worker's settings of its own: app id, topics and Redis prefix all named after it."""
    return {
        "APP_ID": app_id,
        "TOPIC_EVENTS": f"{app_id}-events",
        "TOPIC_SIGNALS": f"{app_id}-signals",
        "TOPIC_DLQ": f"{app_id}-dlq",
        "TOPIC_DECISIONS": f"{app_id}-decisions",
        "TOPIC_OUTCOMES": f"{app_id}-outcomes",
        "REDIS_PREFIX": f"{app_id}:",
    }


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (negative when none)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return {tp.partition: tp.offset for tp in offsets}
    finally:
        consumer.close()


class KafkaIO:
    """Produce to and read back from the session's broker, the way outside clients do.

    `tansu`: the broker is Tansu, whose end offsets need the worker's own way round.
    """

    def __init__(self, bootstrap: str, tansu: bool) -> None:
        self.bootstrap = bootstrap
        self.tansu = tansu
        # murmur2_random is what the contract asks of librdkafka producers. Tansu has no
        # idempotent producer. A broker may silently create an unknown topic with its own
        # partition count, so that stays off.
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "partitioner": "murmur2_random",
                "enable.idempotence": not tansu,
                "allow.auto.create.topics": False,
                "linger.ms": 5,
                # room for messages over the detector's 1 MiB limit, to test that limit
                "message.max.bytes": 4 * 1024 * 1024,
            }
        )
        self._known_topics: set[str] = set()
        self._delivery_errors: list[str] = []

    def create_topics(
        self, names: list[str], partitions: int = 1, config: dict[str, str] | None = None
    ) -> None:
        """Create the topics (with these topic settings, if any) that do not exist yet."""
        if config is None:
            asyncio.run(ensure_topics(self.bootstrap, names, partitions, attempts=5, backoff=0.5))
            return
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        created = admin.create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
        for future in created.values():
            future.result(timeout=30)

    def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """Each partition's end offset (on Tansu exact, unlike its ListOffsets and
        librdkafka's watermarks, when the last record batch holds several records)."""
        return asyncio.run(topic_end_offsets(self.bootstrap, topic, partitions, tansu=self.tansu))

    def partitions(self, topic: str, timeout: float = 10.0) -> list[int]:
        """Return the topic's partition ids (empty if it does not exist)."""
        metadata = self._producer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        return sorted(metadata.partitions)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        flush: bool = True,
    ) -> None:
        """Send one record; pass flush=False to send many, then call flush() once."""
        if topic not in self._known_topics:
            assert self.partitions(topic), f"topic {topic} does not exist; create_topics() first"
            self._known_topics.add(topic)
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery, **extra)
        self._producer.poll(0)
        if flush:
            self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every record sent is acknowledged; fail on any that was not."""
        left = self._producer.flush(timeout)
        errors, self._delivery_errors = self._delivery_errors, []
        assert not left, f"{left} records not delivered within {timeout}s"
        assert not errors, f"delivery failed: {errors}"

    def consume(
        self,
        topic: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Read `topic` from the beginning until `until(records)` holds or `timeout` passes.

        Records are {"key", "value", "partition", "offset"}; what was read by the timeout
        is returned either way, for the test to assert on.
        """
        deadline = time.monotonic() + timeout
        records: list[dict[str, Any]] = []
        # The worker may not have created its output topics yet.
        partitions = self.partitions(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = self.partitions(topic)
        if not partitions:
            return records
        # Partitions are assigned, not subscribed to: Tansu holds a new group's first join
        # for the whole rebalance timeout.
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"kafka-io-{uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        try:
            while not until(records) and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                records.append(
                    {
                        "key": message.key(),
                        "value": message.value(),
                        "partition": message.partition(),
                        "offset": message.offset(),
                    }
                )
        finally:
            consumer.close()
        return records

    def close(self) -> None:
        """Flush and disconnect, before the broker goes away."""
        self._producer.close()

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self._delivery_errors.append(f"{message.topic()}: {error}")


@dataclass
class Worker:
    """A running `python -m streams worker` process."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WEB_PORT']}"

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited within 20 s; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL, as a crash would; return the exit code."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT) -> None:
        """Poll /readyz until it answers 200; fail the test with the log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"worker exited with code {self.process.returncode} before it was ready; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.kill()
        pytest.fail(
            f"worker not ready within {timeout:g}s; last lines of {self.log_path}:\n"
            f"{self.log_tail()}",
            pytrace=False,
        )

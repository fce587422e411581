"""Partitioning and broker-retry behaviour that needs no running broker."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.apache_kafka import new_cluster_id
from streams.embedded import free_port
from streams.io.topics import BrokerUnavailable, ensure_topics, partition_for


def test_partition_for_matches_java_murmur2_reference_values() -> None:
    # Utils.toPositive(Utils.murmur2(key)) % 1000 from Apache Kafka's UtilsTest vectors.
    assert partition_for(b"21", 1000) == (-973932308 & 0x7FFFFFFF) % 1000
    assert partition_for(b"foobar", 1000) == (-790332482 & 0x7FFFFFFF) % 1000
    assert partition_for(b"a-little-bit-long-string", 1000) == (-985981536 & 0x7FFFFFFF) % 1000
    assert partition_for(b"abc", 1000) == 479470107 % 1000


@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 12, 100])
def test_partition_for_matches_aiokafka_default_partitioner(partitions: int) -> None:
    rng = random.Random(partitions)
    keys = [b"", b"acct-1", "account-ü".encode()]
    keys += [f"acct-{i}".encode() for i in range(500)]
    keys += [rng.randbytes(rng.randrange(1, 64)) for _ in range(500)]
    all_partitions = list(range(partitions))

    for key in keys:
        expected = DefaultPartitioner()(key, all_partitions, all_partitions)
        assert partition_for(key, partitions) == expected, key


def test_ensure_topics_gives_up_with_one_line_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.DEBUG)

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=f"broker {bootstrap} not reachable after 2"):
        asyncio.run(ensure_topics(bootstrap, ["events"], partitions=2, attempts=2, backoff=0.1))

    assert time.monotonic() - started < 5
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in noisy] == [
        f"broker {bootstrap} not reachable (ConnectionRefusedError); "
        "retrying with backoff until it answers"
    ]
    assert noisy[0].exc_info is None


def test_free_port_is_bindable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_a_kafka_cluster_id_never_reads_as_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)

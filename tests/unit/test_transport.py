"""The consumer hands each input partition's records to the agent strictly in offset order.

Faust's fetch loop can take records from the fetcher and never deliver them (around the seek
after a rebalance); the consumer then fetches them again instead of letting the next records
jump over them. These tests drive the consumer's getmany with the batches a fetcher returns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from streams.app import new_faust_app
from streams.io.topics import FETCH_MAX_WAIT_MS
from streams.io.transport import KAFKA_SCHEME, TANSU_SCHEME
from streams.settings import Settings

INPUT = TP("events", 0)
CHANGELOG = TP("accounts-changelog", 0)


class Fetcher:
    """Stands in for the broker's answers: each call of getmany gets the next batch."""

    def __init__(self, consumer: Any, batches: list[list[tuple[TP, int]]]) -> None:
        self.batches = batches
        self.sought: list[tuple[TP, int]] = []
        consumer._wait_next_records = self.next_records
        consumer.seek_wait = self.seek_wait
        consumer.highwater = lambda tp: 100

    async def next_records(self, timeout: float) -> tuple[dict[TP, list[Any]], None]:
        records: dict[TP, list[Any]] = {}
        for tp, offset in self.batches.pop(0):
            records.setdefault(tp, []).append(
                ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())
            )
        return records, None

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.extend(partitions.items())


def deliver(batches: list[list[tuple[TP, int]]]) -> tuple[list[tuple[TP, int]], Fetcher]:
    """What the consumer hands out for each batch in turn, and the fetcher it sought."""
    app = faust.App("transport-test", broker=f"{KAFKA_SCHEME}://127.0.0.1:9", store="memory://")
    consumer: Any = app.consumer
    consumer.resume_flow()
    consumer.is_input = lambda tp: tp.topic == INPUT.topic
    fetcher = Fetcher(consumer, batches)

    async def run() -> list[tuple[TP, int]]:
        handed: list[tuple[TP, int]] = []
        while fetcher.batches:
            async for tp, message in consumer.getmany(timeout=0):
                handed.append((tp, message.offset))
        return handed

    return asyncio.run(run()), fetcher


def test_records_past_the_next_offset_are_fetched_again_not_jumped_over() -> None:
    handed, fetcher = deliver(
        [
            [(INPUT, 0), (INPUT, 1), (INPUT, 2)],
            [(INPUT, 5), (INPUT, 6)],  # 3 and 4 were taken from the fetcher and lost
            [(INPUT, 3), (INPUT, 4), (INPUT, 5), (INPUT, 6)],
        ]
    )

    assert handed == [(INPUT, n) for n in range(7)]
    assert fetcher.sought == [(INPUT, 3)]


def test_records_handed_out_already_are_not_handed_out_again() -> None:
    handed, fetcher = deliver([[(INPUT, 0), (INPUT, 1)], [(INPUT, 1), (INPUT, 2)]])

    assert handed == [(INPUT, 0), (INPUT, 1), (INPUT, 2)]
    assert fetcher.sought == []


def test_a_gap_still_there_after_fetching_again_is_a_real_one() -> None:
    handed, fetcher = deliver([[(INPUT, 0)], [(INPUT, 3)], [(INPUT, 3), (INPUT, 4)]])

    assert handed == [(INPUT, 0), (INPUT, 3), (INPUT, 4)]
    assert fetcher.sought == [(INPUT, 1)]


def test_changelog_records_pass_as_they_come() -> None:
    handed, fetcher = deliver([[(CHANGELOG, 0), (CHANGELOG, 7), (INPUT, 0)]])

    assert sorted(handed) == [(CHANGELOG, 0), (CHANGELOG, 7), (INPUT, 0)]
    assert fetcher.sought == []


def test_the_worker_asks_both_brokers_for_a_short_fetch_wait() -> None:
    """aiokafka's next fetch leaves out the partitions whose records are not all handed out
    yet, and a broker holds a fetch of idle partitions alone for the whole wait, while no
    input partition of it is fetched: with Faust's 1.5 s, events waited that long on Kafka."""

    async def fetch_wait(scheme: str) -> int:
        app = faust.App("wait-test", broker=f"{scheme}://127.0.0.1:9", store="memory://")
        thread: Any = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)
        return int(consumer._fetch_max_wait_ms)

    for scheme in (KAFKA_SCHEME, TANSU_SCHEME):
        assert asyncio.run(fetch_wait(scheme)) == FETCH_MAX_WAIT_MS == 20, scheme


def test_the_worker_commits_on_its_timer_never_inside_its_message_loop(tmp_path: Path) -> None:
    """Faust commits after every 10,000 acked messages inside the loop that hands messages
    to the agent: no message reached the agent until the commit's saves were done, and every
    signal of those seconds waited for it. The worker commits on Faust's timer only, beside
    the agent."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path)
    app = new_faust_app(settings)
    consumer: Any = app.consumer
    consumer.resume_flow()
    consumer.is_input = lambda tp: tp.topic == INPUT.topic
    Fetcher(consumer, [[(INPUT, n) for n in range(3)]])
    consumer._n_acked = 10**9  # as after a billion messages acked since the last commit
    commits: list[int] = []
    handed: list[int] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        commits.append(len(handed))
        return True

    async def callback(message: Any) -> None:
        handed.append(message.offset)
        if len(handed) == 3:
            consumer._stopped.set()

    consumer.commit = commit
    consumer.callback = callback
    # on the app's own loop, where Faust runs the callback
    app.loop.run_until_complete(consumer._drain_messages(SimpleNamespace(_stopped=asyncio.Event())))

    assert handed == [0, 1, 2]
    assert commits == []

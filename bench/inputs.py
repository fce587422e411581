"""The benchmark's input topics, produced once per run as fast as the broker takes them.

- the single-event topic: the first N events of a seeded simulation (every event type,
  thousands of accounts), one event per message, keyed by account, on the account's partition;
- the batch topic: the whole simulation (optionally more copies of it under other account
  ids) as 100-event envelopes, each account's events consecutive, every envelope holding
  only accounts whose home is the partition it is written to, so none needs repartitioning;
- for the latency phase: the simulation's history as envelopes, then its last events one
  per message, paced (produced by bench.detector);
- the state phase's input: accounts that the worker has never seen, five events each
  (every kind of data the state keeps).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from bench.infra import BenchError, say
from streams.clock import format_ms
from streams.events import encode_batch
from streams.io.topics import ensure_topics, partition_for
from streams.simulate.wire import messages
from streams.simulate.world import Simulation

BATCH_SIZE = 100
SIM_START = datetime(2026, 1, 1, tzinfo=UTC)

Record = tuple[int, bytes, bytes]  # partition, key, value


class FastProducer:
    """confluent-kafka producer tuned for bulk loading; partitions are always explicit."""

    def __init__(self, bootstrap: str, linger_ms: float = 20) -> None:
        # Tansu has no idempotent producer, and would create a missing topic with its own
        # partition count, so both stay off (as in tests/harness.py).
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": False,
                "allow.auto.create.topics": False,
                "linger.ms": linger_ms,
                "batch.num.messages": 10_000,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "message.max.bytes": 4 * 1024 * 1024,
            }
        )
        self._errors: list[str] = []
        self._unpolled = 0

    def send(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, partition=partition, on_delivery=self._delivered
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
        self._unpolled += 1
        if self._unpolled >= 1000:
            self._producer.poll(0)
            self._unpolled = 0

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float = 120.0) -> None:
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left:
            raise BenchError(f"{left} records not delivered within {timeout:g}s")
        if errors:
            raise BenchError(f"{len(errors)} records not delivered, e.g. {errors[0]}")

    def send_all(self, topic: str, records: Iterable[Record]) -> int:
        count = 0
        for partition, key, value in records:
            self.send(topic, partition, key, value)
            count += 1
        self.flush()
        return count

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    counts = asyncio.run(ensure_topics(bootstrap, names, partitions, attempts=5, backoff=0.5))
    wrong = {name: count for name, count in counts.items() if count != partitions}
    if wrong:
        raise BenchError(f"topics with another partition count than {partitions}: {wrong}")


def envelopes(events: Iterable[dict[str, Any]], partitions: int) -> list[Record]:
    """100-event envelopes: per partition, each account's events consecutive and in order."""
    by_partition: dict[int, dict[str, list[dict[str, Any]]]] = {}
    homes: dict[str, int] = {}
    for event in events:
        account = event["account_id"]
        home = homes.get(account)
        if home is None:
            home = homes[account] = partition_for(account.encode(), partitions)
        by_partition.setdefault(home, {}).setdefault(account, []).append(event)
    records: list[Record] = []
    for partition, accounts in sorted(by_partition.items()):
        flat = list(itertools.chain.from_iterable(accounts.values()))
        for start in range(0, len(flat), BATCH_SIZE):
            chunk = flat[start : start + BATCH_SIZE]
            records.append((partition, chunk[0]["account_id"].encode(), encode_batch(chunk)))
    return records


def renamed(events: list[dict[str, Any]], copy: int) -> Iterator[dict[str, Any]]:
    """The same behaviour by other accounts: copy `copy` of every account and event id."""
    if copy == 0:
        yield from events
        return
    suffix = f".c{copy}"
    for event in events:
        yield {
            **event,
            "account_id": event["account_id"] + suffix,
            "event_id": event["event_id"] + suffix,
        }


@dataclass
class Inputs:
    """What was produced; the whole simulation is kept for the latency phase."""

    single_topic: str
    single_events: int
    batch_topic: str
    batch_events: int
    batch_messages: int
    accounts: int
    event_types: dict[str, int]
    days_covered: tuple[str, str]
    simulation: list[dict[str, Any]] = field(repr=False)

    def latency_split(
        self, count: int, partitions: int
    ) -> tuple[list[Record], list[dict[str, Any]]]:
        """The simulation less its last `count` events as envelopes, and those events."""
        history = self.simulation[: len(self.simulation) - count]
        return envelopes(history, partitions), self.simulation[len(history) :]


def produce_inputs(
    bootstrap: str,
    run_id: str,
    partitions: int,
    accounts: int,
    days: int,
    events: int,
    batch_copies: int,
    seed: int,
) -> Inputs:
    """Simulate, then write the single-event and batch topics; return what they hold."""
    say(f"inputs: simulating {accounts:,} accounts over {days} days (seed {seed})")
    simulation = list(Simulation(accounts, days, seed=seed, start=SIM_START).events())
    if len(simulation) < events:
        raise BenchError(
            f"the simulation has only {len(simulation):,} events, fewer than --events "
            f"{events:,}: raise --accounts or --days"
        )
    first = simulation[:events]
    types = Counter(event["type"] for event in first)
    days_covered = (first[0]["timestamp"][:10], first[-1]["timestamp"][:10])
    seen_accounts = len({event["account_id"] for event in first})

    single_topic = f"{run_id}-single"
    batch_topic = f"{run_id}-batch"
    create_topics(bootstrap, [single_topic, batch_topic], partitions)
    producer = FastProducer(bootstrap)
    say(
        f"inputs: producing {events:,} single-event messages to {single_topic} "
        f"({seen_accounts:,} accounts, {days_covered[0]}..{days_covered[1]})"
    )
    homes: dict[str, int] = {}
    for account, value in messages(first):
        home = homes.get(account)
        if home is None:
            home = homes[account] = partition_for(account.encode(), partitions)
        producer.send(single_topic, home, account.encode(), value)
    producer.flush()

    batch_events = batch_copies * len(simulation)
    say(
        f"inputs: producing the whole simulation, {batch_events:,} events, as "
        f"{BATCH_SIZE}-event envelopes to {batch_topic}"
        + (f" ({batch_copies} copies, each under other account ids)" if batch_copies > 1 else "")
    )
    batch_messages = 0
    for copy in range(batch_copies):
        records = envelopes(renamed(simulation, copy), partitions)
        batch_messages += producer.send_all(batch_topic, records)
    return Inputs(
        single_topic=single_topic,
        single_events=events,
        batch_topic=batch_topic,
        batch_events=batch_events,
        batch_messages=batch_messages,
        accounts=seen_accounts,
        event_types=dict(types.most_common()),
        days_covered=days_covered,
        simulation=simulation,
    )


# Events new_accounts sends for each account.
NEW_ACCOUNT_EVENTS = 5


def new_accounts(first: int, count: int, partitions: int, run_id: str) -> list[Record]:
    """NEW_ACCOUNT_EVENTS events for each of `count` accounts never seen before, as
    envelopes per partition. The accounts are numbered from `first`.

    An account_updated snapshot (plan, limits, segment, MRR, activation, health, renewal
    date, NPS), one user's activity, a workflow run, a feature used and a support ticket:
    what a small account has on its first day, with every kind of data the state keeps.
    """
    moment = int(SIM_START.timestamp() * 1000)
    activated = format_ms(moment - 90 * 86_400_000)
    events: list[dict[str, Any]] = []
    for number in range(first, first + count):
        account = f"{run_id}-mem-{number:06d}"
        ms = moment + number * 10
        events.append(
            {
                "event_id": f"{account}-1",
                "type": "account_updated",
                "account_id": account,
                "timestamp": format_ms(ms),
                "properties": {
                    "plan": "team",
                    "seat_limit": 10,
                    "usage_limits": {"api_calls": 100_000, "storage_gb": 250},
                    "segment": "smb",
                    "mrr": 500.0,
                    "activated_at": activated,
                    "health_score": 80,
                    "renewal_date": "2027-03-31",
                    "nps": 8,
                },
            }
        )
        events.append(
            {
                "event_id": f"{account}-2",
                "type": "user_active",
                "account_id": account,
                "user_id": f"{account}-u1",
                "timestamp": format_ms(ms + 60_000),
                "properties": {"department": "engineering"},
            }
        )
        for n, (kind, properties) in enumerate(
            (
                ("workflow_run", {"workflow": "weekly-report"}),
                ("feature_used", {"feature": "shared_dashboards"}),
                ("support_ticket", {"ticket_id": f"{account}-t1", "severity": "low"}),
            ),
            start=3,
        ):
            events.append(
                {
                    "event_id": f"{account}-{n}",
                    "type": kind,
                    "account_id": account,
                    "user_id": f"{account}-u1",
                    "timestamp": format_ms(ms + n * 60_000),
                    "properties": properties,
                }
            )
    return envelopes(events, partitions)

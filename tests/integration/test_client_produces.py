"""The producer client against the broker: each account on the partition the worker expects."""

from __future__ import annotations

import asyncio

from streams.client import EventProducer, event
from streams.events import decode
from streams.io.topics import partition_for

T = "2026-11-02T09:00:00Z"


def test_the_client_sends_each_accounts_envelopes_to_its_partition(
    kafka_bootstrap, kafka_io, unique_name
):
    topic = unique_name("client") + "-events"
    kafka_io.create_topics([topic], partitions=4)
    accounts = [f"acct-{n}" for n in range(8)]
    events = [
        event("user_active", account, T, user_id=f"u-{n}", event_id=f"e-{account}-{n}")
        for n in range(3)
        for account in accounts
    ]
    bad = {"type": "user_active", "account_id": "acct-0", "timestamp": T}

    async def send():
        async with EventProducer(kafka_bootstrap, topic, batch_events=2) as producer:
            return await producer.send([*events, bad])

    report = asyncio.run(send())
    assert (report.messages, report.events) == (16, 24)
    assert [(position, r.reason) for position, r in report.rejections] == [(24, "schema")]
    records = kafka_io.consume(topic, until=lambda found: len(found) >= 16)
    assert len(records) == 16
    for record in records:
        assert record["partition"] == partition_for(record["key"], 4)
        decoded = decode(record["value"])
        assert decoded.rejections == []
        assert {e.account_id for e in decoded.events} == {record["key"].decode()}
    assert sorted(report.partitions) == sorted(r["partition"] for r in records)

"""The producer client: the events it builds decode in the worker, keyed and batched by account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.client import InvalidEvent, check, event, prepare
from streams.events import decode
from streams.io.topics import partition_for

T = "2026-11-02T09:00:00Z"


def test_an_event_built_by_the_client_decodes_in_the_worker():
    built = event(
        "usage_recorded",
        "acct-1",
        datetime(2026, 11, 2, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        event_id="ev-1",
        meter="api_calls",
        quantity=1200,
    )
    assert built == {
        "event_id": "ev-1",
        "type": "usage_recorded",
        "account_id": "acct-1",
        "timestamp": "2026-11-02T09:30:00.000Z",
        "properties": {"meter": "api_calls", "quantity": 1200},
    }
    decoded = decode(orjson.dumps(built))
    assert decoded.rejections == [] and decoded.events[0].properties.quantity == 1200


def test_a_user_is_sent_where_given_and_each_event_gets_its_own_id():
    one = event("seat_assigned", "acct-1", T, user_id="u-1", department="finance")
    two = event("seat_assigned", "acct-1", T, user_id="u-1")
    assert one["user_id"] == "u-1" and one["properties"] == {"department": "finance"}
    assert one["event_id"] != two["event_id"]


@pytest.mark.parametrize(
    ("args", "kwargs", "reason", "detail"),
    [
        (("seat_assigned", "acct-1", T), {}, "schema", "user_id: Field required"),
        (("teleported", "acct-1", T), {}, "unknown_type", "unknown event type: teleported"),
        (("user_active", "acct-1", "2026-11-02"), {"user_id": "u"}, "timestamp", "timestamp"),
        (
            ("usage_recorded", "acct-1", T),
            {"meter": "api", "quantity": -1},
            "schema",
            "properties.quantity",
        ),
    ],
)
def test_an_event_the_worker_would_reject_raises_with_its_reason(args, kwargs, reason, detail):
    with pytest.raises(InvalidEvent) as raised:
        event(*args, **kwargs)
    assert raised.value.rejection.reason == reason
    assert raised.value.rejection.detail.startswith(detail)


def test_a_datetime_without_a_time_zone_is_refused():
    with pytest.raises(ValueError, match="tzinfo"):
        event("user_active", "acct-1", datetime(2026, 11, 2), user_id="u")  # noqa: DTZ001
    assert check({"type": "user_active"}).reason == "schema"


def test_events_are_grouped_by_account_in_order_into_envelopes_up_to_a_size():
    accounts = ["acct-a", "acct-b", "acct-a", "acct-c", "acct-a", "acct-b"]
    events = [
        event("user_active", account, T, user_id=f"u{n}", event_id=f"e{n}")
        for n, account in enumerate(accounts)
    ]
    bad = {"event_id": "x", "type": "user_active", "account_id": "acct-a", "timestamp": T}
    prepared = prepare([*events[:3], bad, *events[3:]], batch_events=2)
    assert [(position, r.reason) for position, r in prepared.rejections] == [(3, "schema")]
    laid_out = []
    for message in prepared.messages:
        decoded = decode(message.value)
        assert decoded.rejections == [] and message.events == len(decoded.events)
        assert {e.account_id for e in decoded.events} == {message.key.decode()}
        laid_out.append((message.key, [e.event_id for e in decoded.events]))
    assert laid_out == [
        (b"acct-a", ["e0", "e2"]),
        (b"acct-a", ["e4"]),
        (b"acct-b", ["e1", "e5"]),
        (b"acct-c", ["e3"]),
    ]


def test_an_envelope_stays_under_the_byte_limit():
    events = [
        event("user_active", "acct-1", T, user_id="u" * 200, event_id=f"e{n}") for n in range(40)
    ]
    prepared = prepare(events, batch_events=1000, batch_bytes=4000)
    assert all(len(message.value) <= 4000 for message in prepared.messages)
    assert sum(message.events for message in prepared.messages) == 40


def test_aiokafkas_default_partitioner_is_the_one_the_worker_expects():
    partitions = list(range(12))
    for n in range(2000):
        key = f"acct-{n}".encode()
        assert DefaultPartitioner()(key, partitions, partitions) == partition_for(key, 12)


def test_the_timestamp_of_a_utc_datetime_is_kept_to_the_millisecond():
    moment = datetime(2026, 11, 2, 9, 0, 0, 123456, tzinfo=UTC)
    assert event("user_active", "a", moment, user_id="u")["timestamp"] == "2026-11-02T09:00:00.123Z"

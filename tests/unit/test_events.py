"""Decoding Kafka values into events, and every way an input is rejected (contract section 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streams.clock import format_time
from streams.events import (
    MAX_MESSAGE_BYTES,
    AccountUpdated,
    Rejection,
    UserActive,
    decode,
)

T = "2024-05-01T12:00:00Z"
T_SECONDS = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()


def ev(**fields: Any) -> dict[str, Any]:
    """A valid user_active event, with `fields` replacing or adding to it."""
    base = {
        "event_id": "e1",
        "type": "user_active",
        "account_id": "acme",
        "user_id": "u1",
        "timestamp": T,
        "properties": {"department": "eng"},
    }
    return {**base, **fields}


def without(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != name}


def reject(obj: Any) -> tuple[str, str]:
    """Decode one value expected to be rejected whole; return (reason, detail)."""
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    decoded = decode(raw)
    assert decoded.events == []
    [rejection] = decoded.rejections
    assert rejection.raw == raw
    assert rejection.index is None
    return rejection.reason, rejection.detail


VALID: dict[str, dict[str, Any]] = {
    "account_updated": {
        "type": "account_updated",
        "properties": {
            "plan": "team",
            "seat_limit": 20,
            "usage_limits": {"api_calls": 100000},
            "segment": "mid_market",
            "mrr": 1500,
            "activated_at": "2024-01-01T00:00:00Z",
            "health_score": 82.5,
        },
    },
    "seat_assigned": {
        "type": "seat_assigned",
        "user_id": "u1",
        "properties": {"department": "eng"},
    },
    "seat_removed": {"type": "seat_removed", "user_id": "u1"},
    "user_active": {"type": "user_active", "user_id": "u1"},
    "feature_gate_hit": {
        "type": "feature_gate_hit",
        "user_id": "u1",
        "properties": {"feature": "sso", "required_plan": "enterprise"},
    },
    "invite_sent": {"type": "invite_sent", "user_id": "u1", "properties": {"invitee": "a@x.io"}},
    "invite_accepted": {"type": "invite_accepted", "properties": {"invitee": "a@x.io"}},
    "usage_recorded": {
        "type": "usage_recorded",
        "properties": {"meter": "api_calls", "quantity": 5},
    },
    "external_signal": {
        "type": "external_signal",
        "properties": {"kind": "funding_round", "detail": {"amount_usd": 20000000}},
    },
}
CLASS_NAMES = {
    "account_updated": "AccountUpdated",
    "seat_assigned": "SeatAssigned",
    "seat_removed": "SeatRemoved",
    "user_active": "UserActive",
    "feature_gate_hit": "FeatureGateHit",
    "invite_sent": "InviteSent",
    "invite_accepted": "InviteAccepted",
    "usage_recorded": "UsageRecorded",
    "external_signal": "ExternalSignal",
}


# -- accepted input ------------------------------------------------------------


def test_a_single_event_decodes_with_its_timestamp_in_epoch_seconds() -> None:
    obj = ev()

    decoded = decode(orjson.dumps(obj))

    [event] = decoded.events
    assert isinstance(event, UserActive)
    assert decoded.rejections == []
    assert decoded.sources == [obj]
    assert (event.event_id, event.type, event.account_id, event.user_id) == (
        "e1",
        "user_active",
        "acme",
        "u1",
    )
    assert event.timestamp == T_SECONDS
    assert event.properties.department == "eng"


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_each_event_type_of_the_contract_decodes(event_type: str) -> None:
    obj = {"event_id": "e1", "account_id": "acme", "timestamp": T, **VALID[event_type]}

    decoded = decode(orjson.dumps(obj))

    assert decoded.rejections == []
    assert [type(e).__name__ for e in decoded.events] == [CLASS_NAMES[event_type]]


def test_user_id_is_optional_on_invite_accepted_and_usage_recorded() -> None:
    objs = [
        {"event_id": "e1", "account_id": "a", "timestamp": T, **VALID["invite_accepted"]},
        {"event_id": "e2", "account_id": "a", "timestamp": T, **VALID["usage_recorded"]},
    ]

    decoded = decode(orjson.dumps({"events": objs}))

    assert decoded.rejections == []
    assert [e.user_id for e in decoded.events] == [None, None]


def test_a_batch_envelope_keeps_its_events_in_order() -> None:
    objs = [ev(event_id=f"e{n}", user_id=f"u{n}") for n in range(1, 4)]

    decoded = decode(orjson.dumps({"events": objs}))

    assert decoded.rejections == []
    assert [e.event_id for e in decoded.events] == ["e1", "e2", "e3"]
    assert decoded.sources == objs


def test_unknown_extra_fields_are_ignored_at_the_top_and_in_properties() -> None:
    obj = ev(source="web", properties={"department": "eng", "browser": "firefox"})

    [event] = decode(orjson.dumps(obj)).events

    assert isinstance(event, UserActive)
    assert event.properties.department == "eng"
    assert not hasattr(event, "source")


def test_account_updated_remembers_which_fields_were_sent() -> None:
    obj = ev(type="account_updated", properties={"seat_limit": 0, "health_score": None})

    [event] = decode(orjson.dumps(obj)).events

    assert isinstance(event, AccountUpdated)
    assert event.properties.model_fields_set == {"seat_limit", "health_score"}
    assert event.properties.seat_limit == 0


def test_integer_quantities_and_money_are_accepted_as_numbers() -> None:
    obj = ev(type="account_updated", properties={"mrr": 1200, "health_score": 80})

    [event] = decode(orjson.dumps(obj)).events

    assert isinstance(event, AccountUpdated)
    assert (event.properties.mrr, event.properties.health_score) == (1200.0, 80.0)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T07:30:00-04:30", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T12:00:00.250Z", "2024-05-01T12:00:00.250000+00:00"),
        ("2024-05-01t12:00:00z", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01 12:00:00+00:00", "2024-05-01T12:00:00+00:00"),
    ],
)
def test_rfc3339_timestamps_with_an_offset_are_read_as_utc(timestamp: str, expected: str) -> None:
    [event] = decode(orjson.dumps(ev(timestamp=timestamp))).events

    assert datetime.fromtimestamp(event.timestamp, tz=UTC).isoformat() == expected


def test_a_message_of_exactly_one_mib_is_accepted() -> None:
    padding = MAX_MESSAGE_BYTES - len(orjson.dumps(ev(pad="")))
    raw = orjson.dumps(ev(pad="x" * padding))
    assert len(raw) == MAX_MESSAGE_BYTES

    assert len(decode(raw).events) == 1


def test_a_batch_of_ten_thousand_events_is_accepted() -> None:
    objs = [ev(event_id=f"e{n}") for n in range(10_000)]

    decoded = decode(orjson.dumps({"events": objs}), max_bytes=10 * MAX_MESSAGE_BYTES)

    assert len(decoded.events) == 10_000
    assert decoded.rejections == []


def test_format_time_is_utc_with_milliseconds_and_z() -> None:
    assert format_time(T_SECONDS + 0.25) == "2024-05-01T12:00:00.250Z"


# -- rejected input --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id": "e1", ',
        b"not json",
        b"",
        b"\xff\xfe\x00{}",
        '{"a": "\xe9"}'.encode("latin-1"),
    ],
    ids=["truncated", "text", "empty", "binary", "latin-1"],
)
def test_bytes_that_are_not_utf8_json_are_rejected_as_not_json(raw: bytes) -> None:
    reason, _ = reject(raw)

    assert reason == "not_json"


def test_a_missing_value_is_rejected_as_not_json() -> None:
    decoded = decode(None)

    assert [r.reason for r in decoded.rejections] == ["not_json"]


@pytest.mark.parametrize("field", ["event_id", "account_id", "timestamp"])
def test_a_missing_required_field_is_rejected_as_schema_naming_it(field: str) -> None:
    reason, detail = reject(without(ev(), field))

    assert (reason, detail) == ("schema", f"{field}: Field required")


def test_a_missing_type_is_rejected_as_schema() -> None:
    assert reject(without(ev(), "type")) == ("schema", "type: field required")


@pytest.mark.parametrize(
    "event_type",
    ["seat_assigned", "seat_removed", "user_active", "feature_gate_hit", "invite_sent"],
)
def test_a_missing_user_id_where_required_is_rejected_as_schema(event_type: str) -> None:
    obj = {"event_id": "e1", "account_id": "a", "timestamp": T, **VALID[event_type]}

    assert reject(without(obj, "user_id")) == ("schema", "user_id: Field required")


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"event_id": 17}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "e" * 129}, "event_id"),
        ({"account_id": ["acme"]}, "account_id"),
        ({"user_id": 5}, "user_id"),
        ({"properties": "eng"}, "properties"),
        ({"properties": {"department": 7}}, "properties.department"),
    ],
)
def test_a_field_of_the_wrong_type_or_size_is_rejected_as_schema(
    fields: dict[str, Any], where: str
) -> None:
    reason, detail = reject(ev(**fields))

    assert reason == "schema"
    assert detail.startswith(f"{where}: ")


@pytest.mark.parametrize(
    ("event_type", "properties", "where"),
    [
        ("feature_gate_hit", {"required_plan": "pro"}, "properties.feature"),
        ("invite_sent", {}, "properties.invitee"),
        ("invite_accepted", {}, "properties.invitee"),
        ("usage_recorded", {"meter": "api_calls"}, "properties.quantity"),
        ("usage_recorded", {"meter": "api_calls", "quantity": -1}, "properties.quantity"),
        ("usage_recorded", {"meter": "api_calls", "quantity": "5"}, "properties.quantity"),
        ("external_signal", {"kind": "ipo"}, "properties.kind"),
        ("external_signal", {"kind": "funding_round", "detail": "big"}, "properties.detail"),
        ("account_updated", {"seat_limit": -1}, "properties.seat_limit"),
        ("account_updated", {"seat_limit": 2.5}, "properties.seat_limit"),
        ("account_updated", {"seat_limit": True}, "properties.seat_limit"),
        (
            "account_updated",
            {"usage_limits": {"api_calls": 0}},
            "properties.usage_limits.api_calls",
        ),
        ("account_updated", {"segment": "startup"}, "properties.segment"),
        ("account_updated", {"mrr": -5}, "properties.mrr"),
        ("account_updated", {"health_score": 101}, "properties.health_score"),
    ],
)
def test_bad_properties_are_rejected_as_schema_naming_the_property(
    event_type: str, properties: dict[str, Any], where: str
) -> None:
    obj = {"event_id": "e1", "account_id": "a", "user_id": "u1", "timestamp": T}

    reason, detail = reject({**obj, "type": event_type, "properties": properties})

    assert reason == "schema"
    assert detail.startswith(f"{where}: ")


@pytest.mark.parametrize("value", [[ev()], "user_active", 42, None])
def test_a_value_that_is_not_an_object_is_rejected_as_schema(value: Any) -> None:
    reason, _ = reject(value)

    assert reason == "schema"


def test_an_unknown_type_is_rejected_as_unknown_type() -> None:
    assert reject(ev(type="page_viewed")) == ("unknown_type", "unknown event type: page_viewed")


def test_a_message_over_one_mib_is_rejected_as_too_large() -> None:
    padding = MAX_MESSAGE_BYTES + 1 - len(orjson.dumps(ev(pad="")))
    raw = orjson.dumps(ev(pad="x" * padding))

    assert reject(raw) == (
        "too_large",
        f"message is {MAX_MESSAGE_BYTES + 1} bytes; the limit is {MAX_MESSAGE_BYTES}",
    )


@pytest.mark.parametrize(
    "timestamp", ["2024-05-01T12:00:00", "2024-05-01 12:00:00", "2024-05-01T12:00:00.5"]
)
def test_a_timestamp_without_an_offset_is_rejected_as_timestamp(timestamp: str) -> None:
    reason, detail = reject(ev(timestamp=timestamp))

    assert (reason, detail) == ("timestamp", f"timestamp: timestamp has no UTC offset: {timestamp}")


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "2024-05-01",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-05-01T25:00:00Z",
        "20240501T120000Z",
        "2024-05-01T12:00Z",
        "2024-05-01T12Z",
        "2024-W18-3T12:00:00Z",
        "2024-05-01T12:00:00+0200",
        "2024-05-01T12:00:00 UTC",
        "１２０２４-05-01T12:00:00Z",
    ],
)
def test_a_timestamp_that_is_not_rfc3339_is_rejected_as_timestamp(timestamp: str) -> None:
    reason, detail = reject(ev(timestamp=timestamp))

    assert reason == "timestamp"
    assert detail.startswith("timestamp: ")


@pytest.mark.parametrize("timestamp", [1714564800, 1714564800.5, None, {"at": T}])
def test_a_timestamp_that_is_not_a_string_is_rejected_as_timestamp(timestamp: Any) -> None:
    assert reject(ev(timestamp=timestamp)) == (
        "timestamp",
        "timestamp: timestamp must be an RFC 3339 string",
    )


@pytest.mark.parametrize(
    "timestamp", ["1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"]
)
def test_a_timestamp_out_of_range_is_rejected_as_timestamp(timestamp: str) -> None:
    reason, detail = reject(ev(timestamp=timestamp))

    assert (reason, detail) == (
        "timestamp",
        f"timestamp: timestamp outside 2000..2099: {timestamp}",
    )


def test_a_bad_activated_at_is_rejected_as_timestamp_naming_the_property() -> None:
    obj = ev(type="account_updated", properties={"activated_at": "2024-01-01T00:00:00"})

    assert reject(obj) == (
        "timestamp",
        "properties.activated_at: timestamp has no UTC offset: 2024-01-01T00:00:00",
    )


def test_activated_at_may_be_null() -> None:
    obj = ev(type="account_updated", properties={"activated_at": None})

    [event] = decode(orjson.dumps(obj)).events

    assert isinstance(event, AccountUpdated)
    assert event.properties.activated_at is None
    assert "activated_at" in event.properties.model_fields_set


# -- batches with bad events -------------------------------------------------------


def test_each_bad_event_in_a_batch_is_rejected_alone_with_its_index() -> None:
    objs = [
        ev(event_id="good-1"),
        ev(event_id="bad-type", type="page_viewed"),
        ev(event_id="good-2"),
        without(ev(event_id="bad-user"), "user_id"),
        ev(event_id="bad-time", timestamp="2024-05-01T12:00:00"),
        "not an object",
        ev(event_id="good-3"),
    ]

    decoded = decode(orjson.dumps({"events": objs}))

    assert [e.event_id for e in decoded.events] == ["good-1", "good-2", "good-3"]
    assert [(r.reason, r.index) for r in decoded.rejections] == [
        ("unknown_type", 1),
        ("schema", 3),
        ("timestamp", 4),
        ("schema", 5),
    ]
    assert [orjson.loads(r.raw) for r in decoded.rejections] == [objs[1], objs[3], objs[4], objs[5]]


def test_an_empty_batch_is_rejected_as_schema() -> None:
    raw = orjson.dumps({"events": []})

    assert decode(raw).rejections == [
        Rejection("schema", "events must be a list of 1..10000 events, got 0", raw)
    ]


def test_a_batch_of_more_than_ten_thousand_events_is_rejected_whole() -> None:
    raw = orjson.dumps({"events": [ev(event_id=f"e{n}") for n in range(10_001)]})

    decoded = decode(raw, max_bytes=10 * MAX_MESSAGE_BYTES)

    assert decoded.events == []
    assert decoded.rejections == [
        Rejection("schema", "events must be a list of 1..10000 events, got 10001", raw)
    ]


def test_a_batch_whose_events_are_not_a_list_is_rejected_as_schema() -> None:
    reason, detail = reject({"events": ev()})

    assert (reason, detail) == ("schema", "events must be a list of 1..10000 events, got dict")


def test_a_batch_over_one_mib_is_rejected_whole_as_too_large() -> None:
    raw = orjson.dumps({"events": [ev(event_id=f"e{n}", pad="x" * 200) for n in range(4000)]})
    assert len(raw) > MAX_MESSAGE_BYTES

    assert reject(raw)[0] == "too_large"


def test_a_forwarded_batch_that_grows_on_re_encoding_is_split_not_lost() -> None:
    from streams.events import encode_batch, encode_batches

    sources = [
        {
            "event_id": f"e{n}",
            "type": "usage_recorded",
            "account_id": "acme",
            "timestamp": "2026-03-01T00:00:00Z",
            "properties": {"meter": "api_calls", "quantity": 1e15},
        }
        for n in range(300)
    ]
    limit = len(encode_batch(sources)) // 3
    batches = encode_batches(sources, limit)
    assert len(batches) > 1 and all(len(batch) <= limit for batch in batches)
    assert [e.event_id for b in batches for e in decode(b).events] == [f"e{n}" for n in range(300)]

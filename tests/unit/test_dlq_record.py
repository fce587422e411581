"""DLQ records: the rejected bytes and why, with the source position (contract section 1)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import orjson

from streams.events import Rejection
from streams.io.agents import DLQ_RAW_LIMIT, dlq_record

SOURCE = SimpleNamespace(topic="product-events", partition=3, offset=41)


def record(rejection: Rejection) -> dict:
    return orjson.loads(dlq_record(rejection, SOURCE))


def test_a_rejected_message_is_recorded_with_reason_position_and_text():
    assert record(Rejection("not_json", "bad", b"{oops")) == {
        "reason": "not_json",
        "detail": "bad",
        "topic": "product-events",
        "partition": 3,
        "offset": 41,
        "index": None,
        "raw": "{oops",
        "raw_encoding": "utf-8",
        "raw_size": 5,
        "raw_truncated": False,
    }


def test_an_event_rejected_from_a_batch_names_its_index():
    assert record(Rejection("schema", "x", b"{}", index=7))["index"] == 7


def test_bytes_that_are_not_utf8_are_kept_as_base64():
    out = record(Rejection("not_json", "bad", b"\xff\xfe\x00"))
    assert (out["raw_encoding"], base64.b64decode(out["raw"])) == ("base64", b"\xff\xfe\x00")


def test_a_huge_rejected_message_is_cut_to_the_limit_and_says_so():
    raw = ("é" * DLQ_RAW_LIMIT).encode()  # text is cut by characters, never inside one
    out = record(Rejection("too_large", "big", raw))
    assert out["raw"] == "é" * DLQ_RAW_LIMIT
    assert (out["raw_size"], out["raw_truncated"]) == (len(raw), False)
    huge = b"x" * (DLQ_RAW_LIMIT + 1)
    out = record(Rejection("too_large", "big", huge))
    assert (len(out["raw"]), out["raw_size"], out["raw_truncated"]) == (
        DLQ_RAW_LIMIT,
        DLQ_RAW_LIMIT + 1,
        True,
    )
    assert len(dlq_record(Rejection("too_large", "big", b"\x01" * 2_000_000), SOURCE)) < 1_000_000

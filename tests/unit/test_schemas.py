"""The JSON Schemas in schemas/: current with the models, and the contract's examples valid."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from published import signal, with_account

from streams import schemas
from streams.events import Rejection, decode
from streams.io.agents import dlq_record
from streams.signals import DlqRecord


def validator(name: str) -> Draft202012Validator:
    committed = orjson.loads(schemas.path(name).read_bytes())
    Draft202012Validator.check_schema(committed)
    return Draft202012Validator(committed)


def assert_valid(name: str, instance: Any) -> None:
    errors = [error.message for error in validator(name).iter_errors(instance)]
    assert errors == [], f"{name}: {errors}"


def test_the_committed_schemas_are_those_of_the_models():
    assert schemas.stale() == [], "run `python -m streams schemas` and commit schemas/"


def test_check_reports_a_schema_that_differs(tmp_path, capsys):
    assert schemas.main(["--out", str(tmp_path)]) == 0
    assert schemas.main(["--out", str(tmp_path), "--check"]) == 0
    schemas.path("signal", tmp_path).write_text("{}")
    assert schemas.main(["--out", str(tmp_path), "--check"]) == 1
    assert "signal.schema.json" in capsys.readouterr().err


T = "2026-11-02T09:00:00Z"
# One event of each type as the contract's section 2 describes it.
CONTRACT_EVENTS: list[dict[str, Any]] = [
    {
        "type": "account_updated",
        "properties": {
            "plan": "team",
            "seat_limit": 20,
            "usage_limits": {"api_calls": 100000},
            "segment": "mid_market",
            "mrr": 3000,
            "activated_at": "2025-06-01T00:00:00+02:00",
            "health_score": None,
        },
    },
    {"type": "seat_assigned", "user_id": "u-1", "properties": {"department": "finance"}},
    {"type": "seat_removed", "user_id": "u-1"},
    {"type": "user_active", "user_id": "u-2", "properties": {}},
    {
        "type": "feature_gate_hit",
        "user_id": "u-2",
        "properties": {"feature": "sso", "required_plan": "enterprise"},
    },
    {"type": "invite_sent", "user_id": "u-2", "properties": {"invitee": "x@example.com"}},
    {"type": "invite_accepted", "properties": {"invitee": "x@example.com"}},
    {"type": "usage_recorded", "properties": {"meter": "api_calls", "quantity": 1200.5}},
    {
        "type": "external_signal",
        "properties": {"kind": "funding_round", "detail": {"round": "B"}},
        "source": "crm",  # unknown extra fields are ignored
    },
]


def contract_event(n: int, shape: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"ev-{n}", "account_id": "acct-1", "timestamp": T, **shape}


@pytest.mark.parametrize("n", range(len(CONTRACT_EVENTS)), ids=lambda n: CONTRACT_EVENTS[n]["type"])
def test_each_event_type_of_the_contract_validates_and_the_worker_takes_it(n):
    obj = contract_event(n, CONTRACT_EVENTS[n])
    assert_valid("event", obj)
    assert decode(orjson.dumps(obj)).rejections == []


def test_the_batch_envelope_validates_and_an_empty_one_does_not():
    batch = {"events": [contract_event(n, shape) for n, shape in enumerate(CONTRACT_EVENTS)]}
    assert_valid("event-batch", batch)
    assert len(decode(orjson.dumps(batch)).events) == len(CONTRACT_EVENTS)
    assert not validator("event-batch").is_valid({"events": []})


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "user_active", "account_id": "acct-1", "timestamp": T},  # no event_id
        {"event_id": "e", "type": "teleported", "account_id": "acct-1", "timestamp": T},
        {"event_id": "e", "type": "seat_assigned", "account_id": "acct-1", "timestamp": T},
        {
            "event_id": "e",
            "type": "usage_recorded",
            "account_id": "acct-1",
            "timestamp": T,
            "properties": {"meter": "api_calls", "quantity": -1},
        },
    ],
    ids=["no event_id", "unknown type", "seat without user", "negative quantity"],
)
def test_an_event_the_worker_rejects_does_not_validate(bad):
    assert not validator("event").is_valid(bad)
    assert decode(orjson.dumps(bad)).rejections


def test_the_v2_signal_of_the_contract_and_a_decision_validate():
    published = with_account(signal())
    assert_valid("signal", published)
    decision = {
        "schema_version": 2,
        "decision_id": "d-1",
        "account_id": "acct-1",
        "trigger": "invite_surge",
        "level": 1,
        "reason": "gated_nps",
        "detail": {"nps": 5, "min_nps": 8},
        "detected_at": T,
        "source_event_id": "ev-9",
        "signal": {**published, "emitted_at": None},
    }
    assert_valid("decision", decision)


def test_a_v1_signal_does_not_validate_as_v2():
    assert not validator("signal").is_valid(signal())


def test_the_dlq_record_of_the_contract_and_of_the_worker_validate():
    assert_valid(
        "dlq-record",
        {
            "reason": "not_json",
            "detail": "unexpected character",
            "topic": "product-events",
            "partition": 3,
            "offset": 41,
            "raw": "{oops",
        },
    )
    source = SimpleNamespace(topic="product-events", partition=3, offset=41)
    for rejection in (
        Rejection("schema", "type: field required", b"{}", index=2),
        Rejection("not_json", "bad", b"\xff\xfe"),
    ):
        written = orjson.loads(dlq_record(rejection, source))
        DlqRecord.model_validate(written)
        assert_valid("dlq-record", written)


def test_an_outcome_record_of_the_contract_validates():
    assert_valid(
        "outcome",
        {
            "signal_id": "s-1",
            "account_id": "acct-1",
            "trigger": "seat_saturation",
            "route": "csm",
            "segment": "mid_market",
            "stage": "won",
            "via": "self_serve",
            "detected_at": "2026-10-01T00:00:00Z",
            "outcome_at": "2026-10-15T12:00:00Z",
            "days_to_outcome": 14.5,
            "expansion_mrr": 450.0,
            "reason": None,
            "source_event_id": "ev-77",
        },
    )


def test_a_scorecard_row_of_the_contract_validates():
    assert_valid(
        "scorecard-row",
        {
            "account_id": "acct-1",
            "segment": "enterprise",
            "health_score": 91,
            "activation_status": "activated",
            "expansion_readiness": 83,
            "criteria": {
                "activation": "met",
                "health": "met",
                "churn_risk": "met",
                "utilization": "met",
                "adoption": "unknown",
                "support": "unmet",
                "nps": "met",
            },
            "active_triggers": ["usage_ceiling", "invite_surge"],
            "recommended_motion": "csm_led",
            "estimated_expansion_acv": 5400.0,
            "updated_at": T,
        },
    )

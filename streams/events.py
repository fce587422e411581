"""Product events of the contract (section 2) and decoding of raw Kafka values into them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

MAX_MESSAGE_BYTES = 1 << 20
MAX_BATCH_EVENTS = 10_000
# Event times outside this range are rejected: they would move an account's clock
# (the latest event time seen) to a place no real event can follow.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(2100, 1, 1, tzinfo=UTC).timestamp()

RejectionReason = Literal["not_json", "schema", "unknown_type", "too_large", "timestamp"]
REASONS: tuple[str, ...] = get_args(RejectionReason)
# Messages nested deeper than this (lists and objects; the two levels of a batch envelope
# do not count) are rejected whole. orjson writes at most 254 levels, and what an event
# carries travels on, a few levels deeper, in re-keyed batches, signals and the account state.
MAX_DEPTH = 64
_ORJSON_MAX_DEPTH = 254

# RFC 3339 date-time (section 5.6; "T"/"Z" in either case, or a space as its note allows).
# The offset is optional here only so that its absence gets its own message.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"(?P<offset>[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)


def parse_timestamp(value: Any) -> float:
    """Return epoch seconds for an RFC 3339 timestamp that carries an offset."""
    if not isinstance(value, str):
        raise PydanticCustomError("timestamp", "timestamp must be an RFC 3339 string")
    form = _RFC3339.fullmatch(value)
    if form is None:
        raise _not_rfc3339(value)
    if form["offset"] is None:
        raise PydanticCustomError(
            "timestamp", "timestamp has no UTC offset: {value}", {"value": value[:64]}
        )
    text = value.upper().replace(" ", "T")
    # RFC 3339 allows a leap second (23:59:60 UTC); it is read as second 59 of its minute
    leap = text[17:19] == "60"
    if leap:
        text = text[:17] + "59" + text[19:]
    try:
        # fromisoformat checks the ranges the pattern lets through (month 13, February 30)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _not_rfc3339(value) from None
    seconds = parsed.timestamp()
    if not EARLIEST <= seconds < LATEST:
        raise PydanticCustomError(
            "timestamp", "timestamp outside 2000..2099: {value}", {"value": value[:64]}
        )
    if leap and int(seconds) % 86_400 // 60 != 23 * 60 + 59:
        raise _not_rfc3339(value)  # a leap second is the last second of a UTC day
    return seconds


def _not_rfc3339(value: str) -> PydanticCustomError:
    return PydanticCustomError(
        "timestamp", "not an RFC 3339 timestamp: {value}", {"value": value[:64]}
    )


def parse_optional_timestamp(value: Any) -> float | None:
    return None if value is None else parse_timestamp(value)


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_optional_date_or_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 date-time, or of a date (YYYY-MM-DD) at 00:00 UTC."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return parse_timestamp(f"{value}T00:00:00Z")
        except PydanticCustomError:
            raise PydanticCustomError(
                "timestamp", "not a date (YYYY-MM-DD) in 2000..2099: {value}", {"value": value}
            ) from None
    return parse_optional_timestamp(value)


# In JSON a time is an RFC 3339 string; the models hold it as epoch seconds.
_TIME_SCHEMA = {"type": "string", "format": "date-time"}
Timestamp = Annotated[float, BeforeValidator(parse_timestamp), WithJsonSchema(_TIME_SCHEMA)]
OptionalTimestamp = Annotated[
    float | None,
    BeforeValidator(parse_optional_timestamp),
    WithJsonSchema({"anyOf": [_TIME_SCHEMA, {"type": "null"}]}),
]
OptionalDateOrTime = Annotated[
    float | None,
    BeforeValidator(parse_optional_date_or_time),
    WithJsonSchema(
        {"anyOf": [_TIME_SCHEMA, {"type": "string", "format": "date"}, {"type": "null"}]}
    ),
]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
Segment = Literal["smb", "mid_market", "enterprise"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class AccountProperties(_Model):
    """Absent fields keep their previous value; `model_fields_set` tells which were sent."""

    plan: Name | None = None
    seat_limit: Annotated[int, Field(ge=0, le=10**9)] | None = None
    usage_limits: dict[Name, Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None
    segment: Segment | None = None
    mrr: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] | None = None
    activated_at: OptionalTimestamp = None
    health_score: Annotated[float, Field(ge=0, le=100)] | None = None
    renewal_date: OptionalDateOrTime = None
    nps: Annotated[float, Field(ge=0, le=10)] | None = None


class DepartmentProperties(_Model):
    department: Name | None = None


class GateProperties(_Model):
    feature: Name
    required_plan: Name | None = None


class InviteProperties(_Model):
    invitee: Name


class UsageProperties(_Model):
    meter: Name
    quantity: Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]


ExternalKind = Literal[
    "champion_promoted",
    "exec_sponsor_added",
    "funding_round",
    "headcount_growth",
    "expansion_inquiry",
    "qbr_unmet_need",
]


class ExternalProperties(_Model):
    kind: ExternalKind
    detail: dict[str, Any] | None = None


class WorkflowProperties(_Model):
    workflow: Id
    status: Literal["completed", "failed"] = "completed"


class FeatureProperties(_Model):
    feature: Id


class TicketProperties(_Model):
    ticket_id: Name | None = None
    severity: Name | None = None


Stage = Literal["opportunity", "won", "lost", "rejected"]


class OutcomeProperties(_Model):
    stage: Stage
    signal_id: Name | None = None
    expansion_mrr: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] | None = None
    reason: Annotated[str, Field(max_length=1024)] | None = None


class _Event(_Model):
    event_id: Id
    account_id: Id
    user_id: Name | None = None
    timestamp: Timestamp


class AccountUpdated(_Event):
    type: Literal["account_updated"]
    properties: AccountProperties = AccountProperties()


class SeatAssigned(_Event):
    type: Literal["seat_assigned"]
    user_id: Name
    properties: DepartmentProperties = DepartmentProperties()


class SeatRemoved(_Event):
    type: Literal["seat_removed"]
    user_id: Name
    properties: DepartmentProperties = DepartmentProperties()


class UserActive(_Event):
    type: Literal["user_active"]
    user_id: Name
    properties: DepartmentProperties = DepartmentProperties()


class FeatureGateHit(_Event):
    type: Literal["feature_gate_hit"]
    user_id: Name
    properties: GateProperties


class InviteSent(_Event):
    type: Literal["invite_sent"]
    user_id: Name
    properties: InviteProperties


class InviteAccepted(_Event):
    type: Literal["invite_accepted"]
    properties: InviteProperties


class UsageRecorded(_Event):
    type: Literal["usage_recorded"]
    properties: UsageProperties


class ExternalSignal(_Event):
    type: Literal["external_signal"]
    properties: ExternalProperties


class WorkflowRun(_Event):
    type: Literal["workflow_run"]
    user_id: Name
    properties: WorkflowProperties


class FeatureUsed(_Event):
    type: Literal["feature_used"]
    user_id: Name
    properties: FeatureProperties


class SupportTicket(_Event):
    type: Literal["support_ticket"]
    properties: TicketProperties = TicketProperties()


class ExpansionOutcome(_Event):
    type: Literal["expansion_outcome"]
    properties: OutcomeProperties


Event = (
    AccountUpdated
    | SeatAssigned
    | SeatRemoved
    | UserActive
    | FeatureGateHit
    | InviteSent
    | InviteAccepted
    | UsageRecorded
    | ExternalSignal
    | WorkflowRun
    | FeatureUsed
    | SupportTicket
    | ExpansionOutcome
)
EVENT_TYPES = (
    "account_updated",
    "seat_assigned",
    "seat_removed",
    "user_active",
    "feature_gate_hit",
    "invite_sent",
    "invite_accepted",
    "usage_recorded",
    "external_signal",
    "workflow_run",
    "feature_used",
    "support_ticket",
    "expansion_outcome",
)
_event_adapter: TypeAdapter[Event] = TypeAdapter(
    Annotated[Event, Field(discriminator="type")]  # type: ignore[arg-type]
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input the detector cannot use, and why; `raw` is the rejected bytes."""

    reason: str
    detail: str
    raw: bytes
    index: int | None = None  # position in a batch envelope; None for the whole message


@dataclass(slots=True)
class Decoded:
    """Valid events in input order, each beside the JSON object it came from."""

    events: list[Event] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def _reason(error: ValidationError) -> tuple[str, str]:
    """The contract's rejection reason for a validation error, and a one-line detail."""
    errors = error.errors(include_url=False)
    first = errors[0]
    if first["type"] == "union_tag_invalid":
        return "unknown_type", f"unknown event type: {str(first['input'].get('type'))[:64]}"
    if first["type"] == "union_tag_not_found":
        return "schema", "type: field required"
    # a bad timestamp is named as such even when other fields are wrong too
    bad_time = next((e for e in errors if e["type"] == "timestamp"), None)
    if bad_time is not None:
        where = ".".join(str(part) for part in bad_time["loc"][1:]) or "timestamp"
        return "timestamp", f"{where}: {bad_time['msg']}"
    where = ".".join(str(part) for part in first["loc"][1:]) or "event"
    return "schema", f"{where}: {first['msg']}"


def validate_event(obj: Any) -> Event:
    """Validate one parsed JSON value as an event; raises ValidationError."""
    return _event_adapter.validate_python(obj)


def _decode_one(obj: Any, index: int | None) -> Event | Rejection:
    if not isinstance(obj, dict):
        raw = orjson.dumps(obj)
        return Rejection(
            "schema", f"event must be a JSON object, not {type(obj).__name__}", raw, index
        )
    try:
        return validate_event(obj)
    except ValidationError as error:
        reason, detail = _reason(error)
        return Rejection(reason, detail, orjson.dumps(obj), index)


def _nested_deeper_than(parsed: Any, raw: bytes, depth: int) -> bool:
    """Whether the JSON value nests lists and objects more than `depth` levels deep."""
    if raw.count(b"[") + raw.count(b"{") <= depth:
        return False
    # orjson writes at most _ORJSON_MAX_DEPTH levels: wrapped in that many minus `depth`
    # lists, the value can be written only if it is at most `depth` levels deep (and
    # orjson finds that out many times faster than a walk over the value here would)
    for _ in range(_ORJSON_MAX_DEPTH - depth):
        parsed = [parsed]
    try:
        orjson.dumps(parsed)
    except orjson.JSONEncodeError:
        return True
    return False


def decode(
    raw: bytes | None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_batch: int = MAX_BATCH_EVENTS,
) -> Decoded:
    """Turn one Kafka value (an event or a batch envelope) into events and rejections."""
    out = Decoded()
    raw = raw or b""
    if len(raw) > max_bytes:
        out.rejections.append(
            Rejection("too_large", f"message is {len(raw)} bytes; the limit is {max_bytes}", raw)
        )
        return out
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        out.rejections.append(Rejection("not_json", str(error)[:200], raw))
        return out
    envelope = isinstance(parsed, dict) and "events" in parsed and "type" not in parsed
    if _nested_deeper_than(parsed, raw, MAX_DEPTH + 2 if envelope else MAX_DEPTH):
        out.rejections.append(
            Rejection("schema", f"JSON nested more than {MAX_DEPTH} levels deep", raw)
        )
        return out
    if envelope:
        batch = parsed["events"]
        if not isinstance(batch, list) or not 1 <= len(batch) <= max_batch:
            size = len(batch) if isinstance(batch, list) else type(batch).__name__
            out.rejections.append(
                Rejection(
                    "schema", f"events must be a list of 1..{max_batch} events, got {size}", raw
                )
            )
            return out
        for index, obj in enumerate(batch):
            result = _decode_one(obj, index)
            if isinstance(result, Rejection):
                out.rejections.append(result)
            else:
                out.events.append(result)
                out.sources.append(obj)
        return out
    result = _decode_one(parsed, None)
    if isinstance(result, Rejection):
        out.rejections.append(Rejection(result.reason, result.detail, raw))
    else:
        out.events.append(result)
        out.sources.append(parsed)
    return out


def encode_batch(sources: list[dict[str, Any]]) -> bytes:
    """Serialize original event objects as a batch envelope."""
    return orjson.dumps({"events": sources})


def encode_batches(
    sources: list[dict[str, Any]], max_bytes: int = MAX_MESSAGE_BYTES
) -> list[bytes]:
    """Batch envelopes of `sources`, in order, each within `max_bytes` where one event fits.

    Re-encoding can make a batch longer than the message it came from (orjson writes
    1e15 as 1000000000000000.0), so a forwarded batch is split rather than rejected.
    """
    whole = encode_batch(sources)
    if len(whole) <= max_bytes or len(sources) == 1:
        return [whole]
    half = len(sources) // 2
    return encode_batches(sources[:half], max_bytes) + encode_batches(sources[half:], max_bytes)

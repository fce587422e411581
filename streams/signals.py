"""The output contract: expansion signals and decision (audit) records, and their ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from streams.domain.gates import GATES, REASONS, GateStatus
from streams.domain.triggers import ExpansionType, Route
from streams.events import RejectionReason, Segment, Stage
from streams.rules import TRIGGERS

TriggerName = Literal[TRIGGERS]  # type: ignore[valid-type]
DecisionReason = Literal[(*REASONS, "cooldown", "collision")]  # type: ignore[valid-type]


def signal_id(account_id: str, trigger: str, level: float, source_event_id: str) -> str:
    """Derive the id from what fired: the same input always yields the same id."""
    basis = "\x1f".join((account_id, trigger, f"{level:g}", source_event_id))
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


class AccountContext(BaseModel):
    """The account as the detector knew it when a signal fired; null where never sent."""

    model_config = ConfigDict(extra="forbid")

    plan: str | None
    seat_limit: int | None = Field(ge=0)
    seats_in_use: int = Field(ge=0)
    active_users_30d: int = Field(ge=0)
    mrr: float | None = Field(ge=0)
    health_score: float | None = Field(ge=0, le=100)
    nps: float | None = Field(ge=0, le=10)
    renewal_date: str | None
    activated_at: str | None
    departments_30d: int = Field(ge=0, description="distinct departments on events in 30 days")


class ExpansionSignal(BaseModel):
    """One published signal (contract section 5)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = 2
    signal_id: str
    account_id: str
    trigger: TriggerName
    expansion_type: ExpansionType
    level: float
    score: int = Field(ge=0, le=100)
    route: Route
    segment: Segment
    estimated_expansion_mrr: float
    signal_stack: int = Field(ge=1)
    co_signals: list[TriggerName]
    supersedes: str | None
    evidence: dict[str, Any]
    account: AccountContext
    detected_at: str
    emitted_at: str | None
    source_event_id: str


class Decision(BaseModel):
    """A trigger that fired but was not published, and why (the expansion-decisions topic)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = 2
    decision_id: str
    account_id: str
    trigger: TriggerName
    level: float
    reason: DecisionReason
    detail: dict[str, Any]
    detected_at: str
    source_event_id: str
    signal: ExpansionSignal


def _record(model: type[BaseModel]) -> Callable[..., dict[str, Any]]:
    """A builder of `model`'s JSON object: every field given, or its default, in the model's
    order. It does not validate (the detector builds these on its hot path); the unit tests
    validate what the detector builds against the model."""
    fields = model.model_fields
    template = {name: None if info.is_required() else info.default for name, info in fields.items()}
    required = frozenset(name for name, info in fields.items() if info.is_required())

    def build(**values: Any) -> dict[str, Any]:
        if values.keys() - template.keys() or required - values.keys():
            unknown = sorted(values.keys() - template.keys())
            missing = sorted(required - values.keys())
            raise TypeError(f"{model.__name__}: unknown {unknown}, missing {missing}")
        return {**template, **values}

    build.__doc__ = f"A {model.__name__} as the JSON object the contract defines."
    return build


signal_record = _record(ExpansionSignal)
decision_record = _record(Decision)


class DlqRecord(BaseModel):
    """A rejected input and why, on the events DLQ topic (contract section 1).

    The contract names reason, detail, topic, partition, offset and raw; the others say
    where in a batch the event was and how `raw` holds the bytes.
    """

    model_config = ConfigDict(extra="forbid")

    reason: RejectionReason
    detail: str
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    index: int | None = Field(default=None, ge=0, description="position in a batch envelope")
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_size: int | None = Field(default=None, ge=0, description="bytes of the rejected input")
    raw_truncated: bool = False


class Outcome(BaseModel):
    """What became of a signal, on the expansion-outcomes topic (contract section 10)."""

    model_config = ConfigDict(extra="forbid")

    signal_id: str
    account_id: str
    trigger: TriggerName
    route: Route
    segment: Segment
    stage: Stage
    via: Literal["reported", "self_serve"]
    detected_at: str
    outcome_at: str
    days_to_outcome: float
    expansion_mrr: float | None = Field(ge=0)
    reason: str | None
    source_event_id: str


ScorecardCriteria = create_model(
    "ScorecardCriteria",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Each gate of contract section 6 for one account; `unknown` where data is missing.",
    **{gate.name: (GateStatus, ...) for gate in GATES},  # type: ignore[call-overload]
)


class ScorecardRow(BaseModel):
    """One account's expansion readiness (contract section 11)."""

    model_config = ConfigDict(extra="forbid")

    account_id: str
    segment: Segment
    health_score: float | None = Field(ge=0, le=100)
    activation_status: Literal["not_activated", "activating", "activated"]
    expansion_readiness: int = Field(ge=0, le=100)
    criteria: ScorecardCriteria  # type: ignore[valid-type]
    active_triggers: list[TriggerName] = Field(
        description="published or decided in the last 14 days, in priority order"
    )
    recommended_motion: Literal["not_ready", "self_serve", "csm_led", "sales_led", "none"]
    estimated_expansion_acv: float = Field(ge=0)
    updated_at: str


rejection_record = _record(DlqRecord)
scorecard_record = _record(ScorecardRow)
outcome_record = _record(Outcome)

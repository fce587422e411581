"""The output contract: expansion signals and decision (audit) records, and their ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streams.domain.gates import REASONS
from streams.domain.triggers import ExpansionType
from streams.events import Segment
from streams.rules import TRIGGERS

Route = Literal["in_app", "csm", "sales"]
TriggerName = Literal[TRIGGERS]  # type: ignore[valid-type]
DecisionReason = Literal[(*REASONS, "cooldown", "collision")]  # type: ignore[valid-type]


def signal_id(account_id: str, trigger: str, level: float, source_event_id: str) -> str:
    """Derive the id from what fired: the same input always yields the same id."""
    basis = "\x1f".join((account_id, trigger, f"{level:g}", source_event_id))
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


class ExpansionSignal(BaseModel):
    """One published signal (contract section 5)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
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
    detected_at: str
    emitted_at: str | None
    source_event_id: str


class Decision(BaseModel):
    """A trigger that fired but was not published, and why (the expansion-decisions topic)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
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

"""The output contract: expansion signals and decision (audit) records, and their ids."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Route = Literal["in_app", "csm", "sales"]
DecisionReason = Literal[
    "gated_not_activated", "gated_health", "gated_churn_risk", "cooldown", "collision"
]


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
    trigger: str
    expansion_type: Literal["seat", "capacity", "tier", "cross_department"]
    level: float
    score: int = Field(ge=0, le=100)
    route: Route
    segment: Literal["smb", "mid_market", "enterprise"]
    estimated_expansion_mrr: float
    signal_stack: int = Field(ge=1)
    co_signals: list[str]
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
    trigger: str
    level: float
    reason: DecisionReason
    detail: dict[str, Any]
    detected_at: str
    source_event_id: str
    signal: ExpansionSignal

"""What became of a published signal: outcome events and self-serve conversions answer it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.clock import DAY, format_time
from streams.domain.state import PUBLISHED_KEPT, AccountState, Published
from streams.events import AccountProperties, ExpansionOutcome
from streams.signals import outcome_record

# Stages after which a self-serve conversion no longer answers a signal.
CLOSED = frozenset(("won", "lost", "rejected"))


@dataclass(frozen=True, slots=True)
class Answer:
    """An outcome matched to a signal the account published (contract section 10)."""

    signal: Published
    stage: str
    via: str  # "reported" (an expansion_outcome event) or "self_serve" (a conversion)
    outcome_at: float  # the outcome's event time
    expansion_mrr: float | None
    reason: str | None
    source_event_id: str

    @property
    def key(self) -> str:
        """What the ledger knows this answer by: a signal is answered once per stage."""
        return f"{self.signal.signal_id}:{self.stage}"

    @property
    def days_to_outcome(self) -> float:
        return round((self.outcome_at - self.signal.detected) / DAY, 6)

    def record(self, account_id: str) -> dict[str, Any]:
        """The record on expansion-outcomes: the same answer always yields the same one."""
        signal = self.signal
        return outcome_record(
            signal_id=signal.signal_id,
            account_id=account_id,
            trigger=signal.trigger,
            route=signal.route,
            segment=signal.segment,
            stage=self.stage,
            via=self.via,
            detected_at=format_time(signal.detected),
            outcome_at=format_time(self.outcome_at),
            days_to_outcome=self.days_to_outcome,
            expansion_mrr=self.expansion_mrr,
            reason=self.reason,
            source_event_id=self.source_event_id,
        )


def remember(state: AccountState, published: Published) -> None:
    """Remember a signal the account published; it becomes the current primary."""
    state.published.append(published)
    del state.published[:-PUBLISHED_KEPT]


def conversion(state: AccountState, props: AccountProperties) -> tuple[bool, float | None]:
    """Whether an account_updated with these properties is a self-serve conversion, read
    before it is applied, and the rise in mrr it carries (None when it carries none).

    A value sent for the first time, seat_limit going from 0 (unlimited) to a number, and a
    meter added or removed are not conversions.
    """
    sent = props.model_fields_set
    converted = False
    if "seat_limit" in sent and props.seat_limit is not None and state.seat_limit:
        converted = props.seat_limit == 0 or props.seat_limit > state.seat_limit
    if "usage_limits" in sent and props.usage_limits and state.usage_limits:
        earlier = state.usage_limits
        raised = (
            meter
            for meter, limit in props.usage_limits.items()
            if meter in earlier and limit > earlier[meter]
        )
        converted |= any(raised)
    if "plan" in sent and props.plan is not None and state.plan is not None:
        converted |= props.plan != state.plan
    rise = None
    if "mrr" in sent and props.mrr is not None and state.mrr is not None:
        rise = round(props.mrr - state.mrr, 2) if props.mrr > state.mrr else None
    return converted, rise


def answer_conversion(
    state: AccountState, expansion_mrr: float | None, at: float, event_id: str
) -> Answer | None:
    """The current primary answered as won, self-serve, unless already closed."""
    if not state.published or CLOSED & set(state.published[-1].stages):
        return None
    return _answer(state.published[-1], "won", "self_serve", at, expansion_mrr, None, event_id)


def answer_outcome(state: AccountState, event: ExpansionOutcome) -> Answer | None | bool:
    """The answer an expansion_outcome event gives: to the signal it names (one the account
    published), or to the current primary. False when it matches no signal; None when the
    signal already has that stage."""
    props = event.properties
    if props.signal_id is None:
        signal = state.published[-1] if state.published else None
    else:
        signal = next((p for p in state.published if p.signal_id == props.signal_id), None)
    if signal is None:
        return False
    if props.stage in signal.stages:
        return None
    return _answer(
        signal,
        props.stage,
        "reported",
        event.timestamp,
        props.expansion_mrr,
        props.reason,
        event.event_id,
    )


def _answer(
    signal: Published,
    stage: str,
    via: str,
    at: float,
    expansion_mrr: float | None,
    reason: str | None,
    event_id: str,
) -> Answer:
    signal.stages.append(stage)
    return Answer(signal, stage, via, at, expansion_mrr, reason, event_id)

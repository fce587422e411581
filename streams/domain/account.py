"""One account's events through the detector, with the duplicate, late and by-type counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from streams.domain.decide import Detector, Outcome
from streams.domain.state import AccountState
from streams.events import Event


@dataclass(slots=True)
class Applied:
    """What a run of one account's events led to: an outcome per event, in order, and counts."""

    outcomes: list[Outcome]
    by_type: Counter[str]  # events applied (not duplicates), by event type
    duplicates: int  # events whose event_id the account had already counted
    late: int  # events applied to state only, too late to fire

    @property
    def changed(self) -> bool:
        """False when every event was a duplicate: the state is as it was."""
        return self.duplicates < len(self.outcomes)


def apply_events(detector: Detector, state: AccountState, events: Sequence[Event]) -> Applied:
    """Apply an account's events to its state in order, the same live and in a backtest."""
    apply = detector.apply
    outcomes = [apply(state, event) for event in events]
    by_type: Counter[str] = Counter()
    duplicates = late = 0
    for event, outcome in zip(events, outcomes, strict=True):
        if outcome.duplicate:
            duplicates += 1
        else:
            by_type[event.type] += 1
            late += outcome.late
    return Applied(outcomes, by_type, duplicates, late)

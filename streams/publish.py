"""The publisher seam: every output of the decision code leaves through a Publisher."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.domain.decide import Outcome


class Publisher(Protocol):
    """Where signals, decisions, outcome records and the serving view go: Kafka and Redis
    live (streams.io.publisher), memory in a backtest (Collected)."""

    async def publish(
        self, account_id: str, outcomes: Sequence[Outcome], sent_at: float | None = None
    ) -> None:
        """Publish what one account's events led to, in order, before returning.

        A signal whose signal_id was published before, or an answer whose (signal_id,
        stage) was, is held back (the ledger), so a replay of the same input publishes
        nothing twice. `sent_at` is when the input
        that led to them was sent (Unix time), for the latency metric.
        """
        ...


@dataclass
class Collected:
    """A Publisher that keeps everything in memory, deduplicating as the live one does."""

    signals: list[dict[str, Any]] = field(default_factory=list)  # published, in order
    decisions: list[dict[str, Any]] = field(default_factory=list)
    serving: dict[str, dict[str, Any]] = field(default_factory=dict)  # account -> its primary
    ledger: set[str] = field(default_factory=set)  # signal_ids published
    deduplicated: Counter[str] = field(default_factory=Counter)  # held back, by account
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # expansion-outcomes records
    answered: set[str] = field(default_factory=set)  # "signal_id:stage" written
    unmatched: Counter[str] = field(default_factory=Counter)  # by account

    async def publish(
        self, account_id: str, outcomes: Sequence[Outcome], sent_at: float | None = None
    ) -> None:
        for outcome in outcomes:
            self.decisions.extend(outcome.decisions)
            for signal in outcome.signals:
                if signal["signal_id"] in self.ledger:
                    self.deduplicated[account_id] += 1
                    continue
                self.ledger.add(signal["signal_id"])
                self.signals.append(signal)
            for answer in outcome.answers:
                if answer.key not in self.answered:
                    self.answered.add(answer.key)
                    self.outcomes.append(answer.record(account_id))
            if outcome.unmatched:
                self.unmatched[account_id] += 1
            if outcome.serving is not None:
                self.serving[account_id] = outcome.serving

    def forget(self, accounts: set[str]) -> None:
        """Drop what these accounts led to, before their events are published again."""
        dropped = [signal for signal in self.signals if signal["account_id"] in accounts]
        self.ledger.difference_update(signal["signal_id"] for signal in dropped)
        self.signals = [s for s in self.signals if s["account_id"] not in accounts]
        self.decisions = [d for d in self.decisions if d["account_id"] not in accounts]
        answered = [record for record in self.outcomes if record["account_id"] in accounts]
        self.answered.difference_update(f"{r['signal_id']}:{r['stage']}" for r in answered)
        self.outcomes = [r for r in self.outcomes if r["account_id"] not in accounts]
        for account in accounts:
            self.serving.pop(account, None)
            self.deduplicated.pop(account, None)
            self.unmatched.pop(account, None)

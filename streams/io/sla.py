"""The response SLA: csm and sales signals pending an answer in Redis, each breach counted once."""

from __future__ import annotations

import logging
import time
from typing import Any

from streams.clock import HOUR
from streams.domain.outcomes import Answer
from streams.io import metrics
from streams.io.ledger import Ledger
from streams.rules import Rules

log = logging.getLogger(__name__)
ROUTES = frozenset(("csm", "sales"))  # the routes a person answers
CHECK_SECONDS = 5.0  # how often each worker takes the breached signals


def member(signal_id: str, route: str, trigger: str) -> str:
    """A pending signal as the sorted set holds it: what a breach is counted by, with its id."""
    return f"{signal_id} {route} {trigger}"


class ResponseSla:
    """Signals routed to a person wait in Redis's `sla_pending` set, by wall-clock deadline,
    from their ledger mark to the mark of their first answer; any worker's periodic check
    takes the due ones out atomically and counts each breach once, across restarts and
    rebalances."""

    def __init__(self, rules: Rules, ledger: Ledger) -> None:
        self.rules = rules
        self.ledger = ledger

    def pending(self, signal: dict[str, Any], emitted: float) -> tuple[str, float] | None:
        """The member and deadline of a signal emitted at `emitted` (Unix time), if a person
        is to answer it."""
        if signal["route"] not in ROUTES:
            return None
        hours = self.rules.for_segment(signal["segment"]).sla_hours
        return member(
            signal["signal_id"], signal["route"], signal["trigger"]
        ), emitted + hours * HOUR

    @staticmethod
    def answered(answer: Answer) -> str | None:
        """The member an answer takes out of the pending set."""
        signal = answer.signal
        if signal.route not in ROUTES:
            return None
        return member(signal.signal_id, signal.route, signal.trigger)

    async def check(self, now: float | None = None) -> int:
        """Count the signals whose deadline has passed unanswered; returns how many."""
        due = await self.ledger.take_due(time.time() if now is None else now)
        for taken in due:
            signal_id, route, trigger = taken.split(" ")
            metrics.SLA_BREACHES.labels(route, trigger).inc()
            log.warning(
                "response SLA breached: signal %s (%s, %s) has no outcome",
                signal_id,
                trigger,
                route,
            )
        return len(due)

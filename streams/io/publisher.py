"""The live Publisher: signals and decisions to Kafka, the ledger and serving view in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import orjson

from streams.clock import format_time
from streams.domain.decide import Outcome
from streams.domain.outcomes import Answer
from streams.io import metrics
from streams.io.delivery import Delivery, Record
from streams.io.ledger import Ledger, Mark
from streams.io.outcomes import count_answer
from streams.io.sla import ResponseSla

log = logging.getLogger(__name__)


class KafkaPublisher:
    """Publishes to the signals, decisions and outcomes topics, through the Redis ledger.

    A signal (an outcome record) is marked in the ledger only once the broker has acked
    it, and the serving view is written last: a crash in between leaves a record on the
    topic that the next owner's reconcile marks (streams.io.reconcile), never a ledger
    entry without a record. The marks also enter csm and sales signals in the response
    SLA's pending set and take answered ones out (streams.io.sla). Redis is read once per
    publication (which of its signals and records are written already) and written once
    (the marks and the serving view, in one transaction).
    """

    def __init__(
        self,
        signals: faust.TopicT,
        decisions: faust.TopicT,
        outcomes: faust.TopicT,
        ledger: Ledger,
        delivery: Delivery,
        sla: ResponseSla,
    ) -> None:
        self.signals = signals
        self.decisions = decisions
        self.outcomes = outcomes
        self.ledger = ledger
        self.delivery = delivery
        self.sla = sla

    async def publish(
        self, account_id: str, outcomes: Sequence[Outcome], sent_at: float | None = None
    ) -> None:
        key = account_id.encode()
        records: list[Record] = []
        signals: list[tuple[dict[str, Any], int]] = []  # and its index in records
        answers: list[tuple[Answer, int]] = []
        serving = None
        emitted = time.time()
        published, answered = await self.ledger.written(
            [signal["signal_id"] for outcome in outcomes for signal in outcome.signals],
            [answer.key for outcome in outcomes for answer in outcome.answers],
        )
        seen_signals, seen_answers = iter(published), iter(answered)
        for outcome in outcomes:
            for decision in outcome.decisions:
                metrics.DECISIONS.labels(decision["reason"]).inc()
                records.append((self.decisions, key, orjson.dumps(decision), None))
            for signal in outcome.signals:
                if next(seen_signals):
                    metrics.SIGNALS_DEDUPLICATED.inc()
                    continue
                signal = {**signal, "emitted_at": format_time(emitted)}
                signals.append((signal, len(records)))
                records.append((self.signals, key, orjson.dumps(signal), None))
            for answer in outcome.answers:
                if next(seen_answers):
                    continue
                answers.append((answer, len(records)))
                record = orjson.dumps(answer.record(account_id))
                records.append((self.outcomes, key, record, None))
            if outcome.unmatched:
                metrics.OUTCOMES_UNMATCHED.inc()
            serving = outcome.serving or serving
        placed = await self.delivery.deliver(records) if records else []
        marks = [
            Mark.published(
                signal["signal_id"], *_place(placed[index]), self.sla.pending(signal, emitted)
            )
            for signal, index in signals
        ]
        marks += [
            Mark.answered(answer.key, *_place(placed[index]), self.sla.answered(answer))
            for answer, index in answers
        ]
        if serving is not None:
            sent_now = {signal["signal_id"]: signal for signal, _ in signals}
            serving = sent_now.get(serving["signal_id"], serving)
        if serving is not None and serving.get("emitted_at") is None:
            # one that keeps the emitted_at stored for it: read first (Ledger.serve)
            if marks:
                await self.ledger.mark(marks)
            await self.ledger.serve(serving)
        elif marks or serving is not None:
            await self.ledger.mark(marks, serving)
        for signal, _ in signals:
            metrics.SIGNALS.labels(signal["trigger"], signal["route"]).inc()
            if sent_at is not None:
                metrics.LATENCY.observe(max(0.0, time.time() - sent_at))
            log.info(
                "signal %s account=%s trigger=%s level=%g route=%s score=%d",
                signal["signal_id"],
                signal["account_id"],
                signal["trigger"],
                signal["level"],
                signal["route"],
                signal["score"],
            )
        for answer, _ in answers:
            count_answer(answer, account_id)


def _place(sent: Any) -> tuple[int | None, int | None]:
    """The partition and offset of an acked record."""
    return getattr(sent, "partition", None), getattr(sent, "offset", None)

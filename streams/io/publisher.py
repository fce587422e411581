"""The live Publisher: signals and decisions to Kafka, the ledger and serving view in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import orjson

from streams.clock import wall_clock
from streams.domain.decide import Outcome
from streams.io import metrics
from streams.io.delivery import Delivery, Record
from streams.io.ledger import Ledger

log = logging.getLogger(__name__)


class KafkaPublisher:
    """Publishes to the signals and decisions topics, through the Redis ledger.

    A signal is marked in the ledger only once the broker has acked it, and the serving
    view is written last: a crash in between leaves a signal on the topic that the next
    owner's reconcile marks (streams.io.reconcile), never a ledger entry without a signal.
    """

    def __init__(
        self,
        signals: faust.TopicT,
        decisions: faust.TopicT,
        ledger: Ledger,
        delivery: Delivery,
    ) -> None:
        self.signals = signals
        self.decisions = decisions
        self.ledger = ledger
        self.delivery = delivery

    async def publish(
        self, account_id: str, outcomes: Sequence[Outcome], sent_at: float | None = None
    ) -> None:
        key = account_id.encode()
        records: list[Record] = []
        signals: list[tuple[dict[str, Any], int]] = []  # and its index in records
        serving = None
        for outcome in outcomes:
            for decision in outcome.decisions:
                metrics.DECISIONS.labels(decision["reason"]).inc()
                records.append((self.decisions, key, orjson.dumps(decision), None))
            for signal in outcome.signals:
                if await self.ledger.published(signal["signal_id"]):
                    metrics.SIGNALS_DEDUPLICATED.inc()
                    continue
                signal = {**signal, "emitted_at": wall_clock()}
                signals.append((signal, len(records)))
                records.append((self.signals, key, orjson.dumps(signal), None))
            serving = outcome.serving or serving
        placed = await self.delivery.deliver(records) if records else []
        for signal, index in signals:
            sent = placed[index]
            partition, offset = getattr(sent, "partition", None), getattr(sent, "offset", None)
            await self.ledger.mark_published(signal["signal_id"], partition, offset)
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
        if serving is not None:
            sent_now = {signal["signal_id"]: signal for signal, _ in signals}
            await self.ledger.serve(sent_now.get(serving["signal_id"], serving))

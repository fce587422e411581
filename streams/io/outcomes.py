"""Outcome records as the worker counts them: metrics and a log line per matched outcome."""

from __future__ import annotations

import logging

from streams.domain.outcomes import Answer
from streams.io import metrics

log = logging.getLogger(__name__)


def count_answer(answer: Answer, account_id: str) -> None:
    """Count an outcome record the broker has acked: by stage, cycle time and won MRR."""
    signal = answer.signal
    metrics.OUTCOMES.labels(signal.trigger, signal.route, answer.stage).inc()
    metrics.DAYS_TO_OUTCOME.labels(signal.trigger, answer.stage).observe(
        max(0.0, answer.days_to_outcome)
    )
    if answer.stage == "won" and answer.expansion_mrr:
        metrics.WON_MRR.labels(signal.trigger, signal.segment).inc(answer.expansion_mrr)
    log.info(
        "outcome %s signal %s account=%s trigger=%s stage=%s via=%s",
        answer.source_event_id,
        signal.signal_id,
        account_id,
        signal.trigger,
        answer.stage,
        answer.via,
    )

"""Prometheus metrics the worker exports on /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS = Counter("expansion_events_total", "Valid events consumed, by event type", ["type"])
DUPLICATES = Counter(
    "expansion_events_duplicate_total", "Events whose event_id was already counted within 24 h"
)
LATE = Counter(
    "expansion_events_late_total",
    "Events older than the account's clock minus the late allowance: state only, no triggers",
)
REJECTED = Counter(
    "expansion_events_rejected_total", "Events or messages sent to the DLQ, by reason", ["reason"]
)
REPARTITIONED = Counter(
    "expansion_events_repartitioned_total",
    "Events forwarded to their account's partition because they arrived on another one",
)
SIGNALS = Counter(
    "expansion_signals_total", "Signals published, by trigger and route", ["trigger", "route"]
)
SIGNALS_DEDUPLICATED = Counter(
    "expansion_signals_deduplicated_total",
    "Signals not published again because the Redis ledger already had their signal_id",
)
DECISIONS = Counter(
    "expansion_decisions_total", "Triggers that fired but were not published, by reason", ["reason"]
)
LATENCY = Histogram(
    "expansion_signal_latency_seconds",
    "From the broker timestamp of the message that fired a signal to its publication",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REDIS_ERRORS = Counter(
    "expansion_redis_errors_total", "Redis operations that failed and were retried"
)
REDIS_UP = Gauge("expansion_redis_up", "1 when the last Redis operation succeeded, else 0")
LAG = Gauge(
    "expansion_consumer_lag",
    "Messages not yet processed, per input partition",
    ["topic", "partition"],
)


def exposition() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST

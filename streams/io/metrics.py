"""Prometheus metrics the worker exports on /metrics."""

from __future__ import annotations

import platform
from collections.abc import Collection, Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from streams.clock import DAY
from streams.events import EVENT_TYPES

# No `_created` series beside each counter and histogram: they were a quarter of the
# exposition's lines, which Prometheus stores as series of their own and no query here reads;
# each scrape of /metrics holds up the agent while the whole exposition is written.
disable_created_metrics()

# The window over which each trigger's reach is measured: a quarter and a bit, as the
# rule of thumb "a healthy trigger fires on 5-15 % of active accounts a quarter" asks.
REACH_WINDOW_SECONDS = 90 * DAY

EVENTS = Counter("expansion_events_total", "Valid events consumed, by event type", ["type"])
# One child per event type, made once: a labels() lookup per event is measurable.
EVENTS_BY_TYPE = {event_type: EVENTS.labels(event_type) for event_type in EVENT_TYPES}
DUPLICATES = Counter(
    "expansion_events_duplicate_total", "Events whose event_id was already counted within 24 h"
)
REREAD = Counter(
    "expansion_events_reread_total",
    "Events skipped because the account's state already held their input message "
    "(read again after a crash or a rebalance)",
)
LATE = Counter(
    "expansion_events_late_total",
    "Events older than the account's clock minus the late allowance: state only, no triggers",
)
REJECTED = Counter(
    "expansion_events_rejected_total",
    "Events or messages sent to the DLQ, by reason",
    ["reason"],
)
REPARTITIONED = Counter(
    "expansion_events_repartitioned_total",
    "Events forwarded to their account's partition because they arrived on another one",
)
MESSAGES = Counter(
    "expansion_messages_total", "Input messages consumed (one message may hold a batch of events)"
)
LAST_MESSAGE = Gauge(
    "expansion_last_message_timestamp_seconds",
    "Unix time at which the worker last finished processing an input message",
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
OUTCOMES = Counter(
    "expansion_outcomes_total",
    "Outcomes matched to a signal and written to expansion-outcomes, by the signal's trigger "
    "and route and the outcome's stage",
    ["trigger", "route", "stage"],
)
DAYS_TO_OUTCOME = Histogram(
    "expansion_outcome_days",
    "Days from a signal's detected_at to the outcome that answered it (event time)",
    ["trigger", "stage"],
    buckets=(1, 3, 7, 14, 21, 30, 45, 60, 90, 120, 180, 365),
)
WON_MRR = Counter(
    "expansion_won_mrr_total",
    "Expansion MRR (USD) that won outcomes added, by the signal's trigger and segment",
    ["trigger", "segment"],
)
OUTCOMES_UNMATCHED = Counter(
    "expansion_outcomes_unmatched_total",
    "expansion_outcome events that matched no signal the account published (ignored)",
)
SLA_BREACHES = Counter(
    "expansion_sla_breaches_total",
    "csm and sales signals with no outcome sla_hours (wall clock) after they were emitted",
    ["route", "trigger"],
)
REDIS_ERRORS = Counter(
    "expansion_redis_errors_total", "Redis operations that failed and were retried"
)
REDIS_UP = Gauge("expansion_redis_up", "1 when the last Redis operation succeeded, else 0")
BROKER_ERRORS = Counter(
    "expansion_broker_errors_total",
    "Sends to the broker that failed, by topic (each is retried)",
    ["topic"],
)
PUBLISH_RETRIES = Counter(
    "expansion_publish_retries_total",
    "Signal, decision and DLQ records sent again after a failed send, by topic",
    ["topic"],
)
LAG = Gauge(
    "expansion_consumer_lag",
    "Messages not yet fetched, per input partition",
    ["topic", "partition"],
)
UNCOMMITTED = Gauge(
    "expansion_consumer_uncommitted_messages",
    "Messages past the group's committed offset, per input partition",
    ["topic", "partition"],
)
COMMITTED = Gauge(
    "expansion_consumer_committed_offset",
    "The group's committed offset, per input partition",
    ["topic", "partition"],
)
ACCOUNTS = Gauge("expansion_accounts_in_state", "Accounts held in this worker's state table")
STATE_BYTES = Gauge(
    "expansion_state_bytes", "Size of the account records held in this worker's state table"
)
STATE_OVER_LIMIT = Counter(
    "expansion_state_over_limit_total",
    "Account saves whose state did not fit the size limits, by outcome: history_dropped (the "
    "oldest user history dropped to fit) or not_saved (its account-wide part alone is over "
    "the message limit)",
    ["outcome"],
)
ACTIVE_ACCOUNTS = Gauge(
    "expansion_active_accounts",
    "Accounts in this worker's state with an event in the last 90 days (event time)",
)
TRIGGER_ACCOUNTS = Gauge(
    "expansion_trigger_accounts",
    "Active accounts on which the trigger published a signal in the last 90 days (event time)",
    ["trigger"],
)
TRIGGER_REACH = Gauge(
    "expansion_trigger_reach_ratio",
    "Share of active accounts the trigger published on in the last 90 days (healthy: 0.05 to 0.15)",
    ["trigger"],
)
BUILD = Info("expansion_build", "Version of the detector and digest of the rules file it runs")


def describe_build(rules_digest: str, rules_file: str) -> None:
    """Set the build/rules info series; call once at start-up."""
    try:
        ours = version("expansion-signals")
    except PackageNotFoundError:
        ours = "unknown"
    BUILD.info(
        {
            "version": ours,
            "python": platform.python_version(),
            "rules_digest": rules_digest,
            "rules_file": rules_file,
        }
    )


def record_state(
    summaries: Iterable[tuple[int, float | None, dict[str, float]]], triggers: Iterable[str]
) -> None:
    """Set the state-size gauges, and the reach of the enabled `triggers`, from account
    summaries (size, clock, {trigger: published at}).

    The window ends at the latest event time held, so a replay of old history is measured
    against its own time, not the wall clock.
    """
    rows = list(summaries)
    ACCOUNTS.set(len(rows))
    STATE_BYTES.set(sum(size for size, _, _ in rows))
    clocks = [clock for _, clock, _ in rows if clock is not None]
    since = (max(clocks) if clocks else 0.0) - REACH_WINDOW_SECONDS
    active = [published for _, clock, published in rows if clock is not None and clock >= since]
    ACTIVE_ACCOUNTS.set(len(active))
    for trigger in triggers:
        reached = sum(1 for published in active if published.get(trigger, -1.0) >= since)
        TRIGGER_ACCOUNTS.labels(trigger).set(reached)
        TRIGGER_REACH.labels(trigger).set(reached / len(active) if active else 0.0)


def exposition(names: Collection[str] = ()) -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type; only the
    series of these names when any are given (`/metrics?name[]=...`, as Prometheus's own
    clients serve it)."""
    registry = REGISTRY.restricted_registry(names) if names else REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST

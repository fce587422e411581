"""Operations pieces that need no broker: state gauges, log lines, bad settings."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import orjson
from prometheus_client import REGISTRY

from streams.clock import DAY
from streams.domain.state import AccountState
from streams.io import metrics
from streams.io.accounts import SUMMARY_SLICE, summarize
from streams.io.records import Account, encode
from streams.logs import ExpectedErrors, JsonFormatter, logging_config
from streams.settings import ROOT

NOW = 1_780_000_000.0


def stored(account: str, clock: float | None, published: dict[str, float]) -> bytes:
    state = AccountState(account)
    state.now = clock
    state.triggers = {name: [1.0, at, []] for name, at in published.items()}
    state.triggers["invite_surge"] = [None, None, ["1|cooldown"]]  # logged, never published
    return state.to_bytes()


def table_value(state: bytes) -> bytes:
    """The account table's value of a state, with the input positions stored beside it."""
    account = Account(AccountState.from_bytes(state), {0: (41, 0), 3: (7, 2)})
    return encode(account, b"acme", limit=1_048_576, budget=1_048_576).head


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_trigger_reach_counts_active_accounts_over_the_last_90_days_of_event_time() -> None:
    values = [
        stored("a", NOW, {"seat_saturation": NOW - 10 * DAY}),
        stored("b", NOW - 30 * DAY, {"seat_saturation": NOW - 95 * DAY, "usage_ceiling": NOW}),
        stored("c", NOW - 5 * DAY, {}),
        stored("d", NOW - 120 * DAY, {"seat_saturation": NOW - 120 * DAY}),  # not active
        stored("e", None, {}),  # only a rejected history: no clock
    ]
    summaries = [(len(value), *AccountState.summary(value)) for value in values]
    metrics.record_state(summaries, ["seat_saturation", "usage_ceiling", "invite_surge"])

    assert gauge("expansion_accounts_in_state") == 5
    assert gauge("expansion_state_bytes") == sum(len(value) for value in values)
    assert gauge("expansion_active_accounts") == 3
    assert gauge("expansion_trigger_accounts", trigger="seat_saturation") == 1
    assert gauge("expansion_trigger_reach_ratio", trigger="seat_saturation") == 1 / 3
    assert gauge("expansion_trigger_reach_ratio", trigger="usage_ceiling") == 1 / 3
    assert gauge("expansion_trigger_reach_ratio", trigger="invite_surge") == 0


def test_summarizing_many_accounts_lets_messages_be_processed_in_between() -> None:
    values = [
        table_value(stored(f"a{n}", NOW - n, {"usage_ceiling": NOW}))
        for n in range(3 * SUMMARY_SLICE)
    ]
    turns: list[int] = []

    async def scenario() -> tuple[list[tuple[int, float | None, dict[str, float]]], int]:
        summarizing = True

        async def other_work() -> None:  # stands for the agent, waiting for the loop
            while summarizing:
                turns.append(1)
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        before = len(turns)
        rows = await summarize([(b"a%d" % n, value) for n, value in enumerate(values)])
        summarizing = False
        await other
        return rows, len(turns) - before

    rows, turns_meanwhile = asyncio.run(scenario())

    assert [(clock, published) for _, clock, published in rows] == [
        (NOW - n, {"usage_ceiling": NOW}) for n in range(3 * SUMMARY_SLICE)
    ]
    assert [size for size, _, _ in rows] == [len(value) for value in values]
    assert turns_meanwhile >= 3  # once per slice at least, not once at the end


def test_no_accounts_gives_zero_reach_not_an_error() -> None:
    metrics.record_state([], ["new_department"])
    assert gauge("expansion_active_accounts") == 0
    assert gauge("expansion_trigger_reach_ratio", trigger="new_department") == 0


def test_a_disabled_trigger_reports_no_reach_rather_than_zero() -> None:
    metrics.TRIGGER_REACH.clear()
    metrics.record_state([(10, NOW, {})], ["usage_ceiling"])
    assert gauge("expansion_trigger_reach_ratio", trigger="usage_ceiling") == 0
    assert gauge("expansion_trigger_reach_ratio", trigger="company_growth") is None


def test_build_info_carries_the_rules_digest() -> None:
    metrics.describe_build("abc123", "config/rules.yaml")
    labels = {"rules_digest": "abc123", "rules_file": "config/rules.yaml"}
    samples = [
        sample
        for family in REGISTRY.collect()
        if family.name == "expansion_build"
        for sample in family.samples
    ]
    assert [sample.value for sample in samples] == [1.0]
    assert labels.items() <= samples[0].labels.items()


def test_the_exposition_has_no_created_series_beside_counters_and_histograms() -> None:
    metrics.SIGNALS.labels("seat_saturation", "sales").inc()
    metrics.DAYS_TO_OUTCOME.labels("seat_saturation", "won").observe(12)

    body = metrics.exposition()[0].decode()

    assert 'expansion_signals_total{route="sales",trigger="seat_saturation"}' in body
    assert 'expansion_outcome_days_count{stage="won",trigger="seat_saturation"}' in body
    assert "_created" not in body


def test_the_exposition_of_named_series_has_those_alone() -> None:
    metrics.SIGNALS.labels("seat_saturation", "sales").inc()
    metrics.DUPLICATES.inc()

    body = metrics.exposition(["expansion_events_duplicate_total"])[0].decode()

    values = [line for line in body.splitlines() if not line.startswith("#")]
    assert [line.rpartition(" ")[0] for line in values] == ["expansion_events_duplicate_total"]


def record(message: str, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord("streams.io.agents", logging.WARNING, "", 0, message, (), exc_info)


def test_json_lines_name_time_level_logger_and_message() -> None:
    line = orjson.loads(JsonFormatter().format(record("signal s1 account=acme")))
    assert line["level"] == "warning" and line["logger"] == "streams.io.agents"
    assert line["message"] == "signal s1 account=acme" and line["time"].endswith("Z")


def test_an_expected_connection_error_is_one_line_without_a_traceback() -> None:
    entry = record("Unable to connect", ConnectionRefusedError(111, "Connection refused"))
    assert ExpectedErrors().filter(entry)
    line = orjson.loads(JsonFormatter().format(entry))
    assert "traceback" not in line
    assert line["message"] == (
        "Unable to connect (ConnectionRefusedError: [Errno 111] Connection refused)"
    )


def test_an_unexpected_error_keeps_its_traceback() -> None:
    try:
        raise KeyError("plan")
    except KeyError as error:
        entry = logging.LogRecord(
            "streams", logging.ERROR, "", 0, "crashed", (), (KeyError, error, error.__traceback__)
        )
    ExpectedErrors().filter(entry)
    line = orjson.loads(JsonFormatter().format(entry))
    assert line["error"] == "KeyError" and "Traceback" in line["traceback"]


def test_framework_loggers_are_quiet_unless_debugging() -> None:
    assert logging_config("info", "text")["loggers"]["faust"]["level"] == "WARNING"
    assert logging_config("debug", "json")["loggers"]["aiokafka"]["level"] == "DEBUG"
    assert logging_config("warn", "text")["root"]["level"] == "WARNING"


def test_a_bad_setting_stops_the_worker_with_one_line_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "xml", "KAFKA_BOOTSTRAP": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: bad setting LOG_FORMAT: Input should be 'text' or 'json'"
    ]

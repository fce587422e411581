"""Outcomes on the real worker: records on expansion-outcomes and their metrics, the response
SLA counted once across a restart, and no second record after a crash before the ledger mark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import redis
import yaml
from builders import event, healthy_account, metrics_of, values, wait_for_metric

from streams.settings import ROOT
from streams.signals import Outcome

CHAMPION = "2026-03-02T00:00:00Z"  # a champion is promoted: relationship_change, routed csm


def signalled(account: str) -> list[dict[str, Any]]:
    """An account whose champion fires a csm signal ($4,000 MRR x 0.15 = $600)."""
    return [
        healthy_account(account),
        event("external_signal", account, CHAMPION, properties={"kind": "champion_promoted"}),
    ]


def outcome(account: str, timestamp: str, stage: str, **properties: Any) -> dict[str, Any]:
    return event("expansion_outcome", account, timestamp, properties={"stage": stage, **properties})


def short_sla_rules(tmp_path: Path, hours: float) -> Path:
    rules = yaml.safe_load((ROOT / "config" / "rules.yaml").read_text())
    rules["defaults"]["sla_hours"] = hours
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def test_outcomes_become_records_and_metrics_and_a_breach_counts_once_across_a_restart(
    worker_factory, kafka_io, redis_url, tmp_path
):
    # 0.01 h = 36 s: long enough for the first worker to stop before it, short for the test
    first = worker_factory(RULES_FILE=str(short_sla_rules(tmp_path, 0.01)))
    env = first.env
    batch = {"events": [*signalled("answered"), *signalled("forgotten")]}
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps(batch), b"answered")
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 2))
    by_account = {s["account_id"]: s for s in signals}
    assert {s["route"] for s in signals} == {"csm"}
    answers = [
        outcome("answered", "2026-03-04T12:00:00Z", "opportunity"),
        outcome("answered", "2026-03-04T13:00:00Z", "opportunity"),  # a stage it has
        outcome("answered", "2026-03-12T00:00:00Z", "won", expansion_mrr=400, reason="team 2"),
        outcome("answered", "2026-03-13T00:00:00Z", "lost", signal_id="not-ours"),
    ]
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps({"events": answers}), b"answered")
    records = values(kafka_io.consume(env["TOPIC_OUTCOMES"], lambda r: len(r) >= 2))
    signal_id = by_account["answered"]["signal_id"]
    assert [(r["signal_id"], r["stage"], r["days_to_outcome"]) for r in records] == [
        (signal_id, "opportunity", 2.5),
        (signal_id, "won", 10.0),
    ]
    for record in records:
        Outcome.model_validate(record)
    assert records[1]["source_event_id"] == answers[2]["event_id"]
    labels = 'route="csm",stage="{}",trigger="relationship_change"'
    wait_for_metric(first, f"expansion_outcomes_total{{{labels.format('won')}}} 1.0")
    metrics = metrics_of(first)
    assert f"expansion_outcomes_total{{{labels.format('opportunity')}}} 1.0" in metrics
    assert (
        'expansion_won_mrr_total{segment="mid_market",trigger="relationship_change"} 400.0'
        in metrics
    )
    assert 'expansion_outcome_days_count{stage="won",trigger="relationship_change"} 1.0' in metrics
    assert "expansion_outcomes_unmatched_total 1.0" in metrics
    assert "expansion_sla_breaches_total{" not in metrics  # the deadline is not past yet
    first.stop()

    second = worker_factory(like=first)
    breach = 'expansion_sla_breaches_total{route="csm",trigger="relationship_change"} 1.0'
    wait_for_metric(second, breach, timeout=90)
    store = redis.Redis.from_url(redis_url)
    assert store.zcard(f"{env['REDIS_PREFIX']}sla_pending") == 0
    log = second.log_path.read_text()
    assert f"response SLA breached: signal {by_account['forgotten']['signal_id']}" in log
    assert signal_id not in log  # answered in time: no breach
    extra = values(kafka_io.consume(env["TOPIC_OUTCOMES"], lambda r: len(r) >= 3, timeout=3))
    assert len(extra) == 2
    assert breach in metrics_of(second)  # still once, after more checks


def test_an_outcome_record_on_the_topic_but_not_in_the_ledger_is_not_written_again(
    worker_factory, kafka_io, redis_url
):
    first = worker_factory()
    env = first.env
    batch = {"events": [*signalled("gap"), outcome("gap", "2026-03-03T00:00:00Z", "rejected")]}
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps(batch), b"gap")
    [written] = values(kafka_io.consume(env["TOPIC_OUTCOMES"], lambda r: len(r) >= 1))
    first.stop()
    # As if the worker had died between the broker's ack of the record and its ledger mark.
    store = redis.Redis.from_url(redis_url)
    prefix = env["REDIS_PREFIX"]
    key = f"{prefix}outcome:{written['signal_id']}:rejected"
    assert store.delete(key, f"{prefix}outcomes_checkpoint") == 2
    replay = worker_factory(like=first, APP_ID=env["APP_ID"] + "-replay")
    wait_for_metric(replay, "expansion_signals_deduplicated_total 1.0", timeout=45)
    records = values(kafka_io.consume(env["TOPIC_OUTCOMES"], lambda r: len(r) >= 2, timeout=3))
    assert records == [written], replay.log_tail()
    assert store.exists(key)
    assert "marked 1 outcomes found on" in replay.log_path.read_text()

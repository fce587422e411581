"""Backtest and live worker agree: one events file, the same signals, decisions and DLQ reasons."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streams.backtest.replay import replay
from streams.io.topics import partition_for
from streams.rules import load
from streams.settings import ROOT
from streams.simulate import cli as simulate

RULES_FILE = ROOT / "config" / "rules.yaml"  # what the worker reads when RULES_FILE is unset


def _key(line: bytes) -> bytes | None:
    """The account a line is about, as a producer would key it (None for unreadable lines)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("events"), list) and obj["events"]:
        obj = obj["events"][0]
    account = obj.get("account_id") if isinstance(obj, dict) else None
    return account.encode() if isinstance(account, str) else None


def _signature(signal: dict[str, Any]) -> tuple[str, str, float, str]:
    return signal["signal_id"], signal["trigger"], signal["level"], signal["route"]


def test_backtest_publishes_what_the_worker_publishes(
    tmp_path: Path, worker_factory: Any, kafka_io: Any
) -> None:
    events = tmp_path / "events.jsonl"
    code = simulate.main(
        [
            *("--accounts", "50", "--days", "60", "--seed", "21", "--start", "2026-01-05"),
            *("--batch", "20", "--bad-fraction", "0.002", "--out", str(events)),
        ]
    )
    assert code == 0
    replayed = replay(events, [("shipped", load(RULES_FILE))])
    run = replayed.runs[0]
    expected = {_signature(s) for s in run.signals}
    assert len(expected) == len(run.signals) >= 20
    assert len({s["trigger"] for s in run.signals}) >= 6
    assert run.decisions and replayed.skipped

    worker = worker_factory()
    env = worker.env
    lines = events.read_bytes().splitlines()
    for line in lines:
        kafka_io.produce(env["TOPIC_EVENTS"], line, key=_key(line), flush=False)
    kafka_io.flush()

    signals = kafka_io.consume(
        env["TOPIC_SIGNALS"], until=lambda got: len(got) >= len(expected), timeout=120
    )
    decisions = kafka_io.consume(
        env["TOPIC_DECISIONS"], until=lambda got: len(got) >= len(run.decisions), timeout=30
    )
    dlq = kafka_io.consume(
        env["TOPIC_DLQ"], until=lambda got: len(got) >= len(replayed.skipped), timeout=30
    )
    # a last look, for anything the worker published beyond what the backtest expects
    signals = kafka_io.consume(
        env["TOPIC_SIGNALS"], until=lambda got: len(got) > len(expected), timeout=3
    )

    published = [orjson.loads(r["value"]) for r in signals]
    assert {_signature(s) for s in published} == expected, worker.log_tail()
    assert len(published) == len(expected)  # no signal_id published twice
    # the whole signal agrees, not only its identity
    live = {s["signal_id"]: {**s, "emitted_at": None} for s in published}
    assert live == {s["signal_id"]: s for s in run.signals}
    for record in signals:
        account = orjson.loads(record["value"])["account_id"]
        assert record["key"] == account.encode()
        assert record["partition"] == partition_for(record["key"], int(env["TOPIC_PARTITIONS"]))

    written = Counter((d["decision_id"], d["reason"]) for d in map(_value, decisions))
    assert written == Counter((d.decision_id, d.reason) for d in run.decisions)
    assert Counter(_value(r)["reason"] for r in dlq) == replayed.skipped_by_reason


def _value(record: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(record["value"])
    return value


def test_simulate_sends_keyed_messages_to_kafka(
    tmp_path: Path, kafka_io: Any, kafka_bootstrap: str, unique_name: Any, monkeypatch: Any
) -> None:
    topic = unique_name("simulated")
    monkeypatch.setenv("TOPIC_PARTITIONS", "3")
    out = tmp_path / "events.jsonl"
    argv = ["--accounts", "6", "--days", "5", "--seed", "4", "--start", "2026-03-02"]
    code = simulate.main([*argv, "--batch", "10", "--kafka", kafka_bootstrap, "--topic", topic])
    assert code == 0
    assert simulate.main([*argv, "--batch", "10", "--out", str(out)]) == 0
    lines = out.read_bytes().splitlines()

    records = kafka_io.consume(topic, until=lambda got: len(got) >= len(lines), timeout=30)
    assert kafka_io.partitions(topic) == [0, 1, 2]
    assert sorted(r["value"] for r in records) == sorted(lines)
    for record in records:
        assert record["key"] == _key(record["value"])
        assert record["partition"] == partition_for(record["key"], 3)

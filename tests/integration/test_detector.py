"""The real worker, as a separate process, against the real broker and Redis."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.request

import orjson
import redis
from builders import event, healthy_account, metrics_of, seats, values, wait_for_metric
from harness import app_env

from streams.io.topics import partition_for
from streams.settings import ROOT
from streams.signals import Decision, ExpansionSignal, signal_id


def test_signals_decisions_dlq_and_serving_view(worker_factory, kafka_io, redis_url):
    worker = worker_factory()
    env = worker.env
    topic = env["TOPIC_EVENTS"]
    acme, fresh = "acme", "fresh-startup"
    # acme: 10 of 10 seats -> seat_saturation 1.0 at once; then 90 % of the API limit ->
    # usage_ceiling, which outranks it and supersedes it.
    acme_seats = seats(acme, 10)
    kafka_io.produce(
        topic, orjson.dumps({"events": [healthy_account(acme), *acme_seats[:4]]}), acme.encode()
    )
    kafka_io.produce(topic, b"{not json", key=acme.encode())
    bad_batch = {
        "events": [
            *acme_seats[4:7],
            event("seat_bought", acme, "2026-03-02T10:07:00Z"),
            event("user_active", acme, "2026-03-02", user_id="x"),
            *acme_seats[7:],
        ]
    }
    kafka_io.produce(topic, orjson.dumps(bad_batch), key=acme.encode())
    # a producer retry: the same event again
    kafka_io.produce(topic, orjson.dumps(acme_seats[5]), key=acme.encode())
    usage = event(
        "usage_recorded",
        acme,
        "2026-03-03T09:00:00Z",
        properties={"meter": "api_calls", "quantity": 900},
    )
    kafka_io.produce(topic, orjson.dumps(usage), key=acme.encode())
    # fresh-startup is not activated: its saturation is gated, not published.
    not_activated = healthy_account(fresh, seat_limit=2)
    not_activated["properties"]["activated_at"] = None
    kafka_io.produce(
        topic, orjson.dumps({"events": [not_activated, *seats(fresh, 2)]}), key=fresh.encode()
    )

    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 2, timeout=45))
    decisions = values(
        kafka_io.consume(
            env["TOPIC_DECISIONS"],
            lambda r: any(orjson.loads(x["value"])["account_id"] == fresh for x in r),
        )
    )
    dlq = values(kafka_io.consume(env["TOPIC_DLQ"], lambda r: len(r) >= 3))

    assert [(s["trigger"], s["level"], s["route"], s["signal_stack"]) for s in signals] == [
        ("seat_saturation", 1.0, "csm", 1),
        ("usage_ceiling", 0.8, "csm", 2),
    ]
    saturation, ceiling = signals
    for s in signals:
        ExpansionSignal.model_validate(s)
        assert s["account_id"] == acme and s["emitted_at"]
    assert saturation["evidence"]["seats_in_use"] == 10  # the duplicate seat counted once
    assert saturation["estimated_expansion_mrr"] == 600.0  # 4000 x 0.15
    assert saturation["signal_id"] == signal_id(
        acme, "seat_saturation", 1.0, saturation["source_event_id"]
    )
    assert ceiling["supersedes"] == saturation["signal_id"]
    assert ceiling["co_signals"] == ["seat_saturation"]
    assert ceiling["source_event_id"] == usage["event_id"]
    assert ceiling["detected_at"] == "2026-03-03T09:00:00.000Z"
    assert ceiling["evidence"]["ratio"] == 0.9

    gated = [d for d in decisions if d["account_id"] == fresh]
    assert [(d["trigger"], d["reason"]) for d in gated] == [
        ("seat_saturation", "gated_not_activated")
    ]
    for d in decisions:
        Decision.model_validate(d)

    assert sorted((d["reason"], d["index"]) for d in dlq) == [
        ("not_json", None),
        ("timestamp", 4),
        ("unknown_type", 3),
    ]
    for d in dlq:
        assert d["topic"] == topic and d["partition"] == partition_for(acme.encode(), 4)
        assert isinstance(d["offset"], int) and d["raw"]
    assert next(d for d in dlq if d["reason"] == "not_json")["raw"] == "{not json"

    store = redis.Redis.from_url(redis_url)
    prefix = env["REDIS_PREFIX"]
    primary = orjson.loads(store.get(f"{prefix}primary:{acme}"))
    assert primary == ceiling  # the published signal itself, emitted_at included
    assert store.zscore(f"{prefix}accounts_by_score", acme) == ceiling["score"]
    assert store.exists(f"{prefix}ledger:{ceiling['signal_id']}")
    assert store.get(f"{prefix}primary:{fresh}") is None

    exposition = metrics_of(worker)
    for line in (
        'expansion_events_total{type="seat_assigned"} 12.0',
        "expansion_events_duplicate_total 1.0",
        'expansion_events_rejected_total{reason="not_json"} 1.0',
        'expansion_signals_total{route="csm",trigger="usage_ceiling"} 1.0',
        'expansion_decisions_total{reason="gated_not_activated"} 1.0',
        "expansion_signal_latency_seconds_count 2.0",
    ):
        assert line in exposition
    # one family by name, as a progress reader asks for it
    url = f"{worker.url}/metrics?name[]=expansion_events_duplicate_total"
    with urllib.request.urlopen(url, timeout=5) as answer:
        named = answer.read().decode()
    assert [line for line in named.splitlines() if not line.startswith("#")] == [
        "expansion_events_duplicate_total 1.0"
    ]


def test_events_on_other_partitions_reach_their_accounts_state(worker_factory, kafka_io):
    worker = worker_factory()
    env = worker.env
    accounts = ["north", "south", "east", "west"]
    # One message mixing four accounts, keyed by none of them: each account's events are
    # forwarded to its own partition and fire there.
    mixed = [e for a in accounts for e in [healthy_account(a, seat_limit=3), *seats(a, 3)]]
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps({"events": mixed}), key=b"bulk-import")
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 4, timeout=45))
    assert sorted((s["account_id"], s["trigger"], s["level"]) for s in signals) == [
        (a, "seat_saturation", 1.0) for a in sorted(accounts)
    ]
    records = kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 4)
    for record in records:
        assert record["partition"] == partition_for(record["key"], 4)


def test_state_survives_a_restart_through_the_changelog(worker_factory, kafka_io):
    first = worker_factory()
    env = first.env
    topic = env["TOPIC_EVENTS"]
    # 9 of 10 seats: 0.9, which must be sustained for 14 days before it fires.
    kafka_io.produce(
        topic, orjson.dumps({"events": [healthy_account("keep"), *seats("keep", 9)]}), b"keep"
    )
    wait_for_metric(first, 'expansion_events_total{type="seat_assigned"} 9.0')
    assert kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: False, timeout=2) == []
    assert first.stop() == 0

    second = worker_factory(like=first)
    kafka_io.produce(topic, orjson.dumps(seats("keep", 1, day="2026-03-05", first=9)[0]), b"keep")
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 1, timeout=45))
    assert [(s["trigger"], s["level"], s["evidence"]["seats_in_use"]) for s in signals] == [
        ("seat_saturation", 1.0, 10)
    ], second.log_tail()
    # it read only the new event: the other nine seats came from the changelog
    exposition = metrics_of(second)
    assert 'expansion_events_total{type="seat_assigned"} 1.0' in exposition
    assert 'expansion_events_total{type="account_updated"} 0.0' in exposition


def test_every_account_of_a_bulk_write_survives_a_restart(worker_factory, kafka_io):
    first = worker_factory()
    env = first.env
    accounts = [f"bulk-{n}" for n in range(40)]
    # 9 of 10 seats each, in one message: the states go to the changelog together, several
    # to a record batch (the embedded broker's end offsets are wrong for such batches)
    nine = [e for a in accounts for e in [healthy_account(a), *seats(a, 9)]]
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps({"events": nine}), b"bulk")
    wait_for_metric(first, 'expansion_events_total{type="seat_assigned"} 360.0')
    assert first.stop() == 0
    # each state is on its account's partition of the changelog, where the worker that
    # owns the account after a rebalance restores it from
    changelog = kafka_io.consume(f"{env['APP_ID']}-accounts-changelog", lambda r: len(r) >= 40)
    assert sorted(r["key"].decode() for r in changelog) == sorted(accounts)
    assert all(r["partition"] == partition_for(r["key"], 4) for r in changelog)

    second = worker_factory(like=first)
    tenth = [seats(a, 1, day="2026-03-05", first=9)[0] for a in accounts]
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps({"events": tenth}), b"bulk")
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 40, timeout=45))
    restored = sorted(
        (s["account_id"], s["trigger"], s["evidence"]["seats_in_use"]) for s in signals
    )
    assert restored == [(a, "seat_saturation", 10) for a in sorted(accounts)], second.log_tail()


def test_reprocessing_from_scratch_publishes_no_signal_twice(worker_factory, kafka_io, redis_url):
    first = worker_factory()
    env = first.env
    kafka_io.produce(
        env["TOPIC_EVENTS"],
        orjson.dumps({"events": [healthy_account("again", seat_limit=2), *seats("again", 2)]}),
        b"again",
    )
    assert len(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 1, timeout=45)) == 1
    first.stop()
    # A new consumer group with empty state reads the whole input again, as after losing
    # its offsets: the same signal fires with the same id and the ledger holds it back.
    replay = worker_factory(like=first, APP_ID=env["APP_ID"] + "-replay")
    kafka_io.produce(
        env["TOPIC_EVENTS"],
        orjson.dumps(
            event(
                "external_signal",
                "again",
                "2026-03-03T00:00:00Z",
                properties={"kind": "funding_round"},
            )
        ),
        b"again",
    )
    decisions = kafka_io.consume(
        env["TOPIC_DECISIONS"], lambda r: any(b"company_growth" in x["value"] for x in r)
    )
    assert decisions, replay.log_tail()
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 2, timeout=5))
    assert len(signals) == 1
    assert "expansion_signals_deduplicated_total 1.0" in metrics_of(replay)
    # the serving view shows the co-signal and keeps the first publication's emitted_at
    primary = orjson.loads(
        redis.Redis.from_url(redis_url).get(f"{env['REDIS_PREFIX']}primary:again")
    )
    assert (primary["signal_id"], primary["co_signals"]) == (
        signals[0]["signal_id"],
        ["company_growth"],
    )
    assert primary["emitted_at"] == signals[0]["emitted_at"]


def test_a_bad_rules_file_stops_start_up_with_one_line_naming_the_field(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("defaults:\n  gates:\n    min_health_score: 150\n")
    result = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=ROOT,
        env={"RULES_FILE": str(rules), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "defaults.gates.min_health_score" in lines[0]


def test_an_input_topic_with_another_partition_count_stops_start_up_with_one_line(
    kafka_bootstrap, kafka_io, unique_name
):
    events_topic = unique_name("events")
    kafka_io.create_topics([events_topic], partitions=3)
    result = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "TOPIC_EVENTS": events_topic,
            "APP_ID": unique_name("app"),
            "TOPIC_PARTITIONS": "8",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: topic {events_topic} has 3 partitions but TOPIC_PARTITIONS=8; "
        "set TOPIC_PARTITIONS=3"
    ]


def test_a_changelog_with_another_partition_count_stops_start_up_with_one_line(
    kafka_bootstrap, kafka_io, unique_name
):
    app_id = unique_name("app")
    changelog = f"{app_id}-accounts-changelog"
    kafka_io.create_topics([changelog], partitions=3)
    result = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            **app_env(app_id),
            "TOPIC_PARTITIONS": "4",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if " INFO " not in line] == [
        f"error: topic {changelog} has 3 partitions but TOPIC_PARTITIONS=4; "
        "the account table's changelog needs as many as the input topic"
    ]


def test_oversized_and_non_utf8_messages_go_to_the_dlq_and_processing_goes_on(
    worker_factory, kafka_io, unique_name
):
    # Apache Kafka takes records up to 1 MB by default; this topic takes more.
    topic = unique_name("events")
    kafka_io.create_topics([topic], partitions=4, config={"max.message.bytes": "4194304"})
    worker = worker_factory(TOPIC_EVENTS=topic)
    env = worker.env
    big = orjson.dumps(
        event(
            "user_active",
            "bulk",
            "2026-03-02T10:00:00Z",
            user_id="u",
            properties={"padding": "x" * (1024 * 1024)},
        )
    )
    kafka_io.produce(topic, big, key=b"bulk")
    kafka_io.produce(topic, b"\xff\xfe not utf-8", key=b"bulk")
    kafka_io.produce(
        topic,
        orjson.dumps({"events": [healthy_account("bulk", seat_limit=1), *seats("bulk", 1)]}),
        key=b"bulk",
    )
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 1, timeout=45))
    assert [(s["account_id"], s["trigger"]) for s in signals] == [("bulk", "seat_saturation")]
    dlq = values(kafka_io.consume(env["TOPIC_DLQ"], lambda r: len(r) >= 2))
    too_large, not_utf8 = sorted(dlq, key=lambda d: d["offset"])
    assert (too_large["reason"], too_large["raw_size"], too_large["raw_truncated"]) == (
        "too_large",
        len(big),
        True,
    )
    assert too_large["raw"] == big[: 128 * 1024].decode()
    assert (not_utf8["reason"], not_utf8["raw_encoding"], not_utf8["raw_truncated"]) == (
        "not_json",
        "base64",
        False,
    )
    assert base64.b64decode(not_utf8["raw"]) == b"\xff\xfe not utf-8"


def test_a_signal_on_the_topic_but_missing_from_the_ledger_is_not_published_again(
    worker_factory, kafka_io, redis_url
):
    first = worker_factory()
    env = first.env
    batch = {"events": [healthy_account("gap", seat_limit=2), *seats("gap", 2)]}
    kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps(batch), b"gap")
    [published] = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 1))
    first.stop()
    # As if the worker had died between the broker's ack and the ledger mark: the signal
    # is on the topic, the ledger knows nothing of it.
    store = redis.Redis.from_url(redis_url)
    prefix = env["REDIS_PREFIX"]
    assert store.delete(f"{prefix}ledger:{published['signal_id']}", f"{prefix}signals_checkpoint")
    replay = worker_factory(like=first, APP_ID=env["APP_ID"] + "-replay")
    wait_for_metric(replay, "expansion_signals_deduplicated_total 1.0", timeout=45)
    signals = values(kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 2, timeout=3))
    assert [s["signal_id"] for s in signals] == [published["signal_id"]], replay.log_tail()
    assert store.exists(f"{prefix}ledger:{published['signal_id']}")
    assert "marked 1 signals found on" in replay.log_path.read_text()

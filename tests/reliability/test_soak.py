"""Soak: SOAK_SECONDS (default 600) of steady input through one worker. After the warm-up (the
first half) its memory stays flat, its lag stays bounded, it logs no error and counts no Redis
or broker error; and what it published is exactly what the backtest publishes for the input."""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import (
    SEED,
    Feeder,
    Journal,
    account_key,
    committed,
    compare,
    log_tails,
    metric,
    problems_in_log,
    read_signals,
    rss_bytes,
    simulated_input,
    wait_processed,
)

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
ACCOUNTS = 60
DAYS_PER_SECOND = 0.6  # simulated days sent per second: about 200 events/s, 40 messages/s
SAMPLE_EVERY = 5.0
# Bounds after the warm-up (the first half of the run).
RSS_GROWTH_MAX = 0.10  # RSS at the end vs. RSS just after the warm-up
RSS_MAX_BYTES = 400 * 1024 * 1024
LAG_MAX_SECONDS = 30  # committed offsets at most this many seconds of input behind


def lines(path: Path) -> Iterator[tuple[bytes, bytes]]:
    with path.open("rb") as file:
        for line in file:
            line = line.rstrip(b"\n")
            yield account_key(line), line


@pytest.mark.slow
def test_soak_steady_load(
    worker_factory: Any, kafka_io: Any, journal: Journal, tmp_path: Path
) -> None:
    days = max(30, round(SOAK_SECONDS * DAYS_PER_SECOND))
    data = simulated_input(tmp_path, ACCOUNTS, days, SEED, batch=20)
    data.messages.clear()  # read from the file as they are sent
    total = sum(1 for _ in data.path.open("rb"))
    worker = worker_factory()
    env = worker.env
    partitions = int(env["TOPIC_PARTITIONS"])
    rate = total / SOAK_SECONDS
    feeder = Feeder(kafka_io, env["TOPIC_EVENTS"], lines(data.path), partitions, rate, total)
    journal.note(
        f"soak {SOAK_SECONDS:g}s: {ACCOUNTS} accounts x {days} days, {data.events} events in "
        f"{total} messages ({data.events / SOAK_SECONDS:.0f} events/s, {rate:.1f} messages/s); "
        f"{len(data.expected)} signals expected; worker pid {worker.process.pid}"
    )
    samples: list[dict[str, float]] = []
    feeder.start()
    next_at = time.monotonic()
    while feeder.is_alive():
        assert worker.process.poll() is None, f"worker exited\n{journal}\n{log_tails([worker])}"
        offsets = committed(kafka_io.bootstrap, env["APP_ID"], env["TOPIC_EVENTS"], partitions)
        sent = Counter(feeder.sent_to)
        samples.append(
            {
                "t": feeder.elapsed,
                "rss": rss_bytes(worker.process.pid),
                "lag_metric": metric(worker, "expansion_consumer_lag") or 0,
                "lag_committed": sum(
                    max(0, n - max(0, offsets.get(p, 0))) for p, n in sent.items()
                ),
                "accounts": metric(worker, "expansion_accounts_in_state") or 0,
                "redis_errors": metric(worker, "expansion_redis_errors_total") or 0,
                "broker_errors": metric(worker, "expansion_broker_errors_total") or 0,
                "retries": metric(worker, "expansion_publish_retries_total") or 0,
            }
        )
        if len(samples) % 12 == 1:
            s = samples[-1]
            journal.note(
                f"t={s['t']:.0f}s {feeder.progress()}: RSS {s['rss'] / 2**20:.1f} MiB, "
                f"lag {s['lag_committed']:.0f} uncommitted / {s['lag_metric']:.0f} unfetched, "
                f"{s['accounts']:.0f} accounts"
            )
        next_at += SAMPLE_EVERY
        time.sleep(max(0.0, next_at - time.monotonic()))
    feeder.finish()
    journal.note(f"stream sent in {feeder.finished_at - feeder.started_at:.1f}s")
    wait_processed(kafka_io.bootstrap, env, feeder.sent_to, [worker], journal, timeout=120)
    records = read_signals(kafka_io, env["TOPIC_SIGNALS"])
    journal.note(f"{len(records)} signal records")

    half = SOAK_SECONDS / 2
    window = max(SAMPLE_EVERY * 3, min(30.0, SOAK_SECONDS / 10))
    after = [s for s in samples if s["t"] >= half]
    assert len(after) >= 4, f"too few samples after the warm-up: {len(after)}"
    start_rss = statistics.median(s["rss"] for s in after if s["t"] < half + window)
    end_rss = statistics.median(s["rss"] for s in after if s["t"] >= after[-1]["t"] - window)
    growth = (end_rss - start_rss) / start_rss
    figures = {
        "rss_first_mib": samples[0]["rss"] / 2**20,
        "rss_after_warmup_mib": start_rss / 2**20,
        "rss_end_mib": end_rss / 2**20,
        "rss_max_mib": max(s["rss"] for s in samples) / 2**20,
        "rss_growth_after_warmup": growth,
        "lag_committed_max": max(s["lag_committed"] for s in after),
        "lag_metric_max": max(s["lag_metric"] for s in after),
        "accounts_max": max(s["accounts"] for s in samples),
        "events": data.events,
        "messages": total,
        "signals": len(records),
    }
    journal.note("figures: " + ", ".join(f"{k}={v:.3g}" for k, v in figures.items()))
    compare(data, records, [worker], journal)

    assert growth < RSS_GROWTH_MAX, f"RSS grew {growth:.1%} after the warm-up\n{journal}"
    assert figures["rss_max_mib"] * 2**20 < RSS_MAX_BYTES, f"RSS over the bound\n{journal}"
    assert figures["accounts_max"] <= ACCOUNTS, journal
    lag_bound = max(200.0, rate * LAG_MAX_SECONDS)
    assert figures["lag_committed_max"] <= lag_bound, f"lag over {lag_bound:.0f}\n{journal}"
    assert not any(s["redis_errors"] or s["broker_errors"] or s["retries"] for s in samples), (
        f"Redis or broker errors counted\n{journal}"
    )
    assert not problems_in_log(worker), problems_in_log(worker)[:20]
    assert worker.process.poll() is None, log_tails([worker])

"""Redis outage: Redis is stopped for 15 s mid-stream and started again. The worker does not
crash, publishes no signal twice and loses none; it reports the outage once in its log, in its
metrics and on /readyz while it lasts, and catches up afterwards."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from faults import (
    SEED,
    Feeder,
    Journal,
    RedisServer,
    compare,
    http_get,
    live_status,
    log_tails,
    metric,
    problems_in_log,
    read_signals,
    readyz,
    wait_processed,
)

STREAM_SECONDS = 40
OUTAGE_SECONDS = 15


def test_redis_stopped_for_15_s_mid_stream(
    worker_factory: Any, kafka_io: Any, simulated: Any, journal: Journal, own_redis: RedisServer
) -> None:
    data = simulated(60, 60, SEED)
    rng = random.Random(SEED)
    worker = worker_factory(REDIS_URL=own_redis.url)
    env = worker.env
    feeder = Feeder.over(
        kafka_io, env["TOPIC_EVENTS"], data.messages, int(env["TOPIC_PARTITIONS"]), STREAM_SECONDS
    )
    journal.note(
        f"{len(data.messages)} messages over {STREAM_SECONDS}s, {len(data.expected)} signals "
        f"expected; Redis at {own_redis.url} (AOF in {own_redis.directory})"
    )
    feeder.start()
    feeder.wait_until(rng.uniform(0.2, 0.3) * STREAM_SECONDS)

    def fail(what: str) -> None:
        pytest.fail(
            f"{what}\n{journal}\n{live_status([worker])}\n{log_tails([worker])}", pytrace=False
        )

    own_redis.stop()
    back_at = time.monotonic() + OUTAGE_SECONDS
    journal.note(f"Redis stopped (redis-cli shutdown) at {feeder.progress()}")
    # While it is down: one log line, the gauges, /readyz, and the process stays up.
    seen: dict[str, object] = {}
    while time.monotonic() < back_at and len(seen) < 4:
        if "log" not in seen and "Redis unreachable" in worker.log_path.read_text():
            seen["log"] = round(OUTAGE_SECONDS - (back_at - time.monotonic()), 1)
        up = metric(worker, "expansion_redis_up")
        errors = metric(worker, "expansion_redis_errors_total") or 0
        if "metrics" not in seen and up == 0 and errors > 0:
            seen["metrics"] = (up, errors)
        status, body = readyz(worker)
        if "readyz" not in seen and status == 503 and body.get("redis") is False:
            seen["readyz"] = body
        if "healthz" not in seen and http_get(f"{worker.url}/healthz")[0] == 200:
            seen["healthz"] = 200
        time.sleep(0.3)
    journal.note(f"during the outage: {seen}")
    if worker.process.poll() is not None:
        fail(f"the worker exited with code {worker.process.returncode} while Redis was down")
    if len(seen) < 4:
        fail(f"the outage was not reported everywhere within {OUTAGE_SECONDS}s: saw {seen}")
    time.sleep(max(0.0, back_at - time.monotonic()))

    own_redis.start()
    journal.note(f"Redis started again at {feeder.progress()}")
    deadline = time.monotonic() + 30
    while not (readyz(worker)[0] == 200 and metric(worker, "expansion_redis_up") == 1):
        if time.monotonic() > deadline:
            fail("the worker did not report Redis up and ready again within 30 s")
        time.sleep(0.3)
    journal.note(f"worker ready again at {feeder.progress()}")

    feeder.finish()
    journal.note(f"stream sent in {feeder.finished_at - feeder.started_at:.1f}s")
    wait_processed(kafka_io.bootstrap, env, feeder.sent_to, [worker], journal)
    records = read_signals(kafka_io, env["TOPIC_SIGNALS"])
    journal.note(f"{len(records)} signal records")
    compare(data, records, [worker], journal)

    log = worker.log_path.read_text(errors="replace")
    assert log.count("Redis unreachable") == 1, log_tails([worker], 60)
    assert "Redis reachable again" in log, log_tails([worker], 60)
    assert not problems_in_log(worker), problems_in_log(worker)[:20]
    assert (metric(worker, "expansion_redis_errors_total") or 0) > 0
    assert worker.process.poll() is None, log_tails([worker])

"""Crash and restart: a worker is killed with SIGKILL at random moments while a simulated
stream flows, and restarted each time; afterwards the published signals are exactly those of
an uninterrupted run of the same input (the backtest), and no signal_id appears twice."""

from __future__ import annotations

import random
from typing import Any

import pytest
from faults import SEED, Feeder, Journal, compare, log_tails, read_signals, wait_processed

# A killed member holds its partitions until the broker's session timeout expires; 6 s (not
# the default 10 s) keeps each restart short, and is the least Apache Kafka accepts by default
# (group.min.session.timeout.ms). Every other setting is the worker's default.
SESSION_TIMEOUT = 6


@pytest.mark.parametrize(
    ("accounts", "days", "seconds", "kills", "seed"),
    [
        pytest.param(60, 60, 30, 3, SEED, id="3-kills"),
        # a minute and a half each: in make test-reliability
        pytest.param(80, 90, 90, 6, SEED + 1, id="6-kills-a", marks=pytest.mark.slow),
        pytest.param(80, 90, 90, 6, SEED + 2, id="6-kills-b", marks=pytest.mark.slow),
    ],
)
def test_sigkill_mid_stream_publishes_what_an_uninterrupted_run_does(
    worker_factory: Any,
    kafka_io: Any,
    simulated: Any,
    journal: Journal,
    accounts: int,
    days: int,
    seconds: float,
    kills: int,
    seed: int,
) -> None:
    data = simulated(accounts, days, SEED)
    rng = random.Random(seed)
    worker = worker_factory(BROKER_SESSION_TIMEOUT=SESSION_TIMEOUT)
    workers = [worker]
    env = worker.env
    partitions = int(env["TOPIC_PARTITIONS"])
    feeder = Feeder.over(kafka_io, env["TOPIC_EVENTS"], data.messages, partitions, seconds)
    journal.note(
        f"seed {seed}: {accounts} accounts x {days} days, {len(data.messages)} messages "
        f"({data.events} events) over {seconds:g}s; {len(data.expected)} signals expected; "
        f"{kills} SIGKILLs"
    )
    feeder.start()
    # Kills are spread over the stream: the first in its first quarter, each next one a random
    # while after the previous restart was ready, so the new worker has done some work first.
    gap = seconds * 0.7 / kills
    feeder.wait_until(rng.uniform(0.05, 0.25) * seconds)
    for n in range(1, kills + 1):
        logged = worker.log_path.read_text(errors="replace").count(" signal ")
        code = worker.kill()
        journal.note(
            f"kill {n}: SIGKILL pid {worker.process.pid} (exit {code}) at {feeder.progress()}; "
            f"it had logged {logged} signals"
        )
        assert code == -9, log_tails([worker])
        worker = worker_factory(like=worker)
        workers.append(worker)
        journal.note(f"restarted as pid {worker.process.pid}, ready at {feeder.progress()}")
        if n < kills:
            feeder.wait_until(feeder.elapsed + rng.uniform(0.3, 1.0) * gap)
    feeder.finish()
    journal.note(f"stream sent in {feeder.finished_at - feeder.started_at:.1f}s")
    wait_processed(kafka_io.bootstrap, env, feeder.sent_to, workers, journal)
    records = read_signals(kafka_io, env["TOPIC_SIGNALS"])
    journal.note(f"{len(records)} signal records on {env['TOPIC_SIGNALS']}")
    compare(data, records, workers, journal)
    assert worker.process.poll() is None, log_tails([worker])

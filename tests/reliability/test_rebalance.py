"""Rebalance: two workers share the input; one is killed mid-stream and later a new one joins.
The survivor takes over the dead worker's partitions and the newcomer takes some of them, each
recovering the accounts' state from the table's changelog; the published signals are exactly
those of an uninterrupted run, and no signal_id appears twice."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from faults import (
    SEED,
    Feeder,
    Journal,
    compare,
    live_status,
    log_tails,
    metric,
    read_signals,
    readyz,
    wait_processed,
)

STREAM_SECONDS = 40


def held(worker: Any) -> set[str]:
    """The input partitions the worker holds now (empty while it rebalances or is down)."""
    status, body = readyz(worker)
    return set(body.get("partitions", [])) if status == 200 else set()


def wait_for(
    condition: Any, what: str, workers: list[Any], journal: Journal, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what} within {timeout:g}s\n{journal}\n{live_status(workers)}\n"
                f"{log_tails(workers)}",
                pytrace=False,
            )
        time.sleep(0.3)


def test_a_killed_member_and_a_new_one_move_state_with_partitions(
    worker_factory: Any, kafka_io: Any, simulated: Any, journal: Journal
) -> None:
    data = simulated(60, 60, SEED)
    rng = random.Random(SEED)
    first = worker_factory()
    second = worker_factory(like=first)
    workers = [first, second]
    env = first.env
    partitions = int(env["TOPIC_PARTITIONS"])
    every = 2 * partitions  # the input topic and the re-keyed topic
    wait_for(
        lambda: held(first) and held(second) and len(held(first) | held(second)) == every,
        "the two workers never shared the partitions",
        workers,
        journal,
        60,
    )
    journal.note(
        f"{len(data.messages)} messages over {STREAM_SECONDS}s, {len(data.expected)} signals "
        f"expected; pid {first.process.pid} holds {sorted(held(first))}, "
        f"pid {second.process.pid} holds {sorted(held(second))}"
    )
    feeder = Feeder.over(kafka_io, env["TOPIC_EVENTS"], data.messages, partitions, STREAM_SECONDS)
    feeder.start()

    feeder.wait_until(rng.uniform(0.15, 0.3) * STREAM_SECONDS)
    first.kill()
    journal.note(f"SIGKILL pid {first.process.pid} at {feeder.progress()}")
    wait_for(
        lambda: len(held(second)) == every,
        "the survivor never took over the dead member's partitions",
        workers,
        journal,
        60,
    )
    journal.note(f"pid {second.process.pid} holds all {every} partitions at {feeder.progress()}")

    feeder.wait_until(max(feeder.elapsed + 2, rng.uniform(0.5, 0.6) * STREAM_SECONDS))
    third = worker_factory(like=second)
    workers.append(third)
    wait_for(
        lambda: held(third) and held(second) and len(held(third) | held(second)) == every,
        "the new member never got a share of the partitions",
        workers,
        journal,
        60,
    )
    moved = sorted(held(third))
    journal.note(f"pid {third.process.pid} joined and holds {moved} at {feeder.progress()}")

    feeder.finish()
    journal.note(f"stream sent in {feeder.finished_at - feeder.started_at:.1f}s")
    wait_processed(kafka_io.bootstrap, env, feeder.sent_to, workers, journal)
    records = read_signals(kafka_io, env["TOPIC_SIGNALS"])
    by_worker = {
        w.process.pid: w.log_path.read_text(errors="replace").count(" signal ") for w in workers
    }
    journal.note(f"{len(records)} signal records; signals logged per worker pid: {by_worker}")
    compare(data, records, workers, journal)

    # The newcomer worked on recovered state: it processed input of the partitions it took
    # over, and holds those accounts (the state gauge is refreshed every 15 s).
    assert (metric(third, "expansion_messages_total") or 0) > 0, log_tails([third])
    wait_for(
        lambda: (metric(third, "expansion_accounts_in_state") or 0) > 0,
        "the new member reports no account in its state",
        [third],
        journal,
        30,
    )
    for worker in (second, third):
        assert worker.process.poll() is None, log_tails([worker])

"""`python -m streams tail` prints published signals in the demo's words, filtered."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import orjson
import pytest
from published import signal, with_account

from streams import present
from streams.settings import ROOT
from streams.tail import render


def lines_of(stream: IO[bytes]) -> queue.Queue[str]:
    """The stream's lines as they come, read by a thread (no blocking read in the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.decode().rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def take(lines: queue.Queue[str], count: int) -> list[str]:
    return [lines.get(timeout=60) for _ in range(count)]


@pytest.fixture
def tail(kafka_bootstrap, kafka_io, unique_name) -> Iterator:
    topic = unique_name("tail") + "-signals"
    kafka_io.create_topics([topic], partitions=2)
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], queue.Queue[str], queue.Queue[str]]:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams", "tail", *args],
            cwd=ROOT,
            env={**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap, "TOPIC_SIGNALS": topic},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        started.append(process)
        assert process.stdout is not None and process.stderr is not None
        return process, lines_of(process.stdout), lines_of(process.stderr)

    def publish(*signals: dict) -> None:
        for one in signals:
            kafka_io.produce(topic, orjson.dumps(one), key=one["account_id"].encode())

    yield start, publish, topic
    for process in started:
        process.terminate()
        process.wait(20)


def test_tail_from_the_beginning_prints_the_signals_of_a_route(tail):
    start, publish, topic = tail
    signals = [
        signal("acct-1", "csm"),
        signal("acct-2", "in_app"),
        with_account(signal("acct-3", "csm")),
    ]
    publish(*signals)
    process, out, err = start("--from-beginning", "--route", "csm")
    assert take(err, 1) == [f"-- signals on {topic} from the beginning"]
    printed = take(out, 3)
    # partitions interleave: compare as a set of lines; each signal is one line or two
    assert sorted(printed) == sorted([present.line(signals[0]), *render(signals[2]).split("\n")])
    assert render(signals[2]).endswith(
        "\n      account: plan team, 17 seats in use of 20, 15 active users in 30 days, "
        "2 departments, MRR $3,000, health 88, NPS 8, activated 2025-06-01"
    )


def test_tail_shows_what_arrives_from_now_for_one_account(tail):
    start, publish, topic = tail
    publish(signal("acct-1", "csm", source_event_id="before"))
    process, out, err = start("--account", "acct-1")
    assert take(err, 1) == [f"-- signals on {topic} from now"]
    later = [signal("acct-2", "sales"), signal("acct-1", "sales", source_event_id="after")]
    publish(*later)
    assert take(out, 1) == [present.line(later[1])]
    with pytest.raises(queue.Empty):
        out.get(timeout=1)


def test_tail_without_a_broker_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "tail"], cwd=ROOT, env=env, capture_output=True
    )
    assert (done.returncode, done.stderr.decode().splitlines()) == (
        2,
        ["error: KAFKA_BOOTSTRAP is not set: tail reads a running broker"],
    )

"""Helpers for the fault tests: a simulated input with its expected signals, a paced producer,
readers of the worker's group offsets, metrics and logs, and the final comparison.

The reference for "an uninterrupted run" is the backtest: it replays the same lines through the
same decision code, with the ledger emulated in memory, and tests/integration/test_parity.py
shows that a real worker publishes exactly its signals.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from harness import committed

from streams.backtest.replay import replay
from streams.io.topics import partition_for
from streams.rules import load
from streams.settings import ROOT
from streams.simulate import cli as simulate

RULES_FILE = ROOT / "config" / "rules.yaml"  # what the worker reads when RULES_FILE is unset
START = "2026-01-05"  # a fixed first day: the same seed always gives the same events
# Overridable, so that a failure seen with another seed can be replayed exactly.
SEED = int(os.environ.get("RELIABILITY_SEED", "20260105"))

Signature = tuple[str, str, float, str]


def signature(signal: dict[str, Any]) -> Signature:
    return signal["signal_id"], signal["trigger"], signal["level"], signal["route"]


def account_key(line: bytes) -> bytes:
    """The account a simulated line (one event or one account's batch) is about."""
    obj = orjson.loads(line)
    if "events" in obj:
        obj = obj["events"][0]
    return str(obj["account_id"]).encode()


@dataclass
class SimulatedInput:
    """A simulated events file, as (key, value) messages, and what the backtest publishes."""

    path: Path
    messages: list[tuple[bytes, bytes]]
    events: int
    expected: dict[str, dict[str, Any]]  # signal_id -> the signal (emitted_at None)

    @property
    def signatures(self) -> set[Signature]:
        return {signature(s) for s in self.expected.values()}


def simulated_input(
    directory: Path, accounts: int, days: int, seed: int, batch: int
) -> SimulatedInput:
    """Write a simulated run (per-account batch envelopes) and backtest it."""
    path = directory / f"events-{accounts}x{days}-s{seed}-b{batch}.jsonl"
    argv = [
        *("--accounts", str(accounts), "--days", str(days), "--seed", str(seed)),
        *("--start", START, "--batch", str(batch), "--out", str(path)),
    ]
    assert simulate.main(argv) == 0
    run = replay(path, [("shipped", load(RULES_FILE))])
    signals = run.runs[0].signals
    expected = {s["signal_id"]: s for s in signals}
    assert len(expected) == len(signals), "the backtest itself published an id twice"
    lines = path.read_bytes().splitlines()
    return SimulatedInput(path, [(account_key(x), x) for x in lines], run.events, expected)


class Feeder(threading.Thread):
    """Sends messages to the input topic at a steady pace, from a thread of its own.

    The pace is `seconds` for the whole list, so faults injected meanwhile land mid-stream.
    `sent_to` counts messages per partition (the producer partitions by murmur2 of the key,
    as `partition_for` does), for `wait_processed`.
    """

    def __init__(
        self,
        kafka_io: Any,
        topic: str,
        messages: Iterable[tuple[bytes, bytes]],
        partitions: int,
        rate: float,
        total: int,
    ) -> None:
        super().__init__(name="feeder", daemon=True)
        self.kafka_io = kafka_io
        self.topic = topic
        self.messages = messages
        self.partitions = partitions
        self.rate = rate  # messages per second
        self.total = total
        self.sent = 0
        self.sent_to: Counter[int] = Counter()
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0

    @classmethod
    def over(
        cls,
        kafka_io: Any,
        topic: str,
        messages: list[tuple[bytes, bytes]],
        partitions: int,
        seconds: float,
    ) -> Feeder:
        return cls(kafka_io, topic, messages, partitions, len(messages) / seconds, len(messages))

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            for key, value in self.messages:
                delay = self.started_at + self.sent / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.kafka_io.produce(self.topic, value, key=key, flush=False)
                self.sent += 1
                self.sent_to[partition_for(key, self.partitions)] += 1
            self.kafka_io.flush(60)
        except BaseException as error:  # reported by finish()
            self.error = error
        finally:
            self.finished_at = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def progress(self) -> str:
        return f"{self.sent}/{self.total} messages sent"

    def wait_until(self, seconds: float) -> None:
        """Sleep until `seconds` after the stream started (or until it ends)."""
        while self.is_alive() and self.elapsed < seconds:
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"feeder still sending after {timeout}s: {self.progress()}"
        if self.error is not None:
            raise AssertionError(f"feeder failed after {self.progress()}") from self.error


@dataclass
class Journal:
    """What a test did when, printed with every failure (and shown by pytest -s)."""

    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        wall = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        line = f"[{time.monotonic() - self.started:6.1f}s {wall}] {text}"
        self.lines.append(line)
        print(line, flush=True)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def log_tails(workers: Iterable[Any], lines: int = 25) -> str:
    parts = []
    for worker in workers:
        state = "running" if worker.process.poll() is None else f"exit {worker.process.returncode}"
        parts.append(
            f"--- worker pid {worker.process.pid} ({state}), {worker.log_path}:\n"
            + worker.log_tail(lines)
        )
    return "\n".join(parts)


def live_status(workers: Iterable[Any]) -> str:
    """/readyz and the progress metrics of each worker still running."""
    wanted = (
        "expansion_consumer_lag",
        "expansion_messages_total",
        "expansion_last_message_timestamp_seconds",
        "expansion_redis_up",
        "expansion_accounts_in_state",
    )
    parts = []
    for worker in workers:
        if worker.process.poll() is not None:
            continue
        status, body = readyz(worker)
        samples = [
            f"{name}{labels} {value:g}"
            for name, labels, value in metric_samples(worker)
            if name in wanted
        ]
        parts.append(
            f"--- worker pid {worker.process.pid}: /readyz {status} {body}\n  "
            + "\n  ".join(samples)
        )
    return "\n".join(parts)


def wait_processed(
    bootstrap: str,
    env: dict[str, str],
    sent_to: Counter[int],
    workers: list[Any],
    journal: Journal,
    timeout: float = 45,
) -> None:
    """Wait until the group has committed every input message sent: all of it is processed.

    Offsets are counted from what was sent (the topic is new to the test), not asked of the
    broker: the embedded broker's ListOffsets(latest) is unreliable for multi-record batches.
    """
    partitions = int(env["TOPIC_PARTITIONS"])
    deadline = time.monotonic() + timeout
    while True:
        offsets = committed(bootstrap, env["APP_ID"], env["TOPIC_EVENTS"], partitions)
        if all(offsets.get(p, -1) >= n for p, n in sent_to.items()):
            journal.note(f"all input committed: {dict(sorted(offsets.items()))}")
            return
        if time.monotonic() > deadline:
            status = live_status(workers)
            lags = [
                value
                for worker in workers
                if worker.process.poll() is None
                for name, _, value in metric_samples(worker)
                if name == "expansion_consumer_lag"
            ]
            hint = (
                "\nThe workers report lag 0 (their fetch position is at the end) while the "
                "group's committed offsets stay behind: messages were fetched but never "
                "processed, and Faust cannot commit past them."
                if lags and not any(lags)
                else ""
            )
            pytest.fail(
                f"input not processed within {timeout:g}s: committed {offsets}, sent "
                f"{dict(sorted(sent_to.items()))}{hint}\n{journal}\n{status}\n"
                f"{log_tails(workers)}",
                pytrace=False,
            )
        time.sleep(0.5)


def read_signals(kafka_io: Any, topic: str) -> list[dict[str, Any]]:
    """Every record on the signals topic, as {"key", "value" (decoded), "partition", "offset"}."""
    partitions = kafka_io.partitions(topic)
    total = sum(kafka_io.end_offsets(topic, partitions).values())
    records = kafka_io.consume(topic, until=lambda got: len(got) >= total, timeout=30)
    assert len(records) >= total, f"read {len(records)} of {total} records on {topic}"
    return [{**r, "value": orjson.loads(r["value"])} for r in records]


def lines_mentioning(workers: Iterable[Any], needle: str, limit: int = 6) -> str:
    found = []
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if needle in line:
                found.append(f"  pid {worker.process.pid}: {line}")
    return "\n".join(found[:limit]) or "  (no log line mentions it)"


def compare(
    expected: SimulatedInput,
    records: list[dict[str, Any]],
    workers: list[Any],
    journal: Journal,
) -> None:
    """The published signals are exactly the uninterrupted run's, and no signal_id twice."""
    published = [r["value"] for r in records]
    counts = Counter(s["signal_id"] for s in published)
    twice = {sid: n for sid, n in counts.items() if n > 1}
    if twice:
        details = []
        for sid, n in sorted(twice.items())[:10]:
            copies = [
                f"partition {r['partition']} offset {r['offset']} emitted_at "
                f"{r['value']['emitted_at']}"
                for r in records
                if r["value"]["signal_id"] == sid
            ]
            first = next(s for s in published if s["signal_id"] == sid)
            details.append(
                f"{sid} x{n} ({first['account_id']} {first['trigger']} {first['level']}): "
                + "; ".join(copies)
                + "\n"
                + lines_mentioning(workers, sid)
            )
        pytest.fail(
            f"{len(twice)} signal_id(s) published more than once "
            f"({len(published)} records, {len(counts)} ids):\n"
            + "\n".join(details)
            + f"\n{journal}\n{log_tails(workers)}",
            pytrace=False,
        )
    got = {signature(s) for s in published}
    want = expected.signatures
    if got != want:
        missing, extra = sorted(want - got), sorted(got - want)
        pytest.fail(
            f"published signals differ from the uninterrupted run: {len(want)} expected, "
            f"{len(got)} published, {len(missing)} missing, {len(extra)} unexpected\n"
            f"missing: {missing[:15]}\nunexpected: {extra[:15]}\n{journal}\n"
            f"{log_tails(workers)}",
            pytrace=False,
        )
    # the whole signal agrees, not only its identity (co-signals, stack, supersedes, evidence)
    live = {s["signal_id"]: {**s, "emitted_at": None} for s in published}
    differing = [sid for sid in live if live[sid] != expected.expected[sid]]
    assert not differing, (
        f"{len(differing)} signals differ in content, e.g. {differing[0]}:\n"
        f"published {live[differing[0]]}\nexpected  {expected.expected[differing[0]]}\n{journal}"
    )


def http_get(url: str, timeout: float = 3) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def readyz(worker: Any) -> tuple[int, dict[str, Any]]:
    status, body = http_get(f"{worker.url}/readyz")
    return status, (orjson.loads(body) if body else {})


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metric_samples(worker: Any) -> Iterator[tuple[str, str, float]]:
    """(name, labels, value) of every sample the worker exports now (none if it is down)."""
    status, body = http_get(f"{worker.url}/metrics")
    if status != 200:
        return
    for line in body.decode().splitlines():
        found = _SAMPLE.match(line)
        if found:
            yield found.group(1), found.group(2) or "", float(found.group(3))


def metric(worker: Any, name: str) -> float | None:
    """The sum of a metric's samples over its labels; None when it has none."""
    values = [value for sample, _, value in metric_samples(worker) if sample == name]
    return sum(values) if values else None


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def problems_in_log(worker: Any) -> list[str]:
    """Log lines at ERROR or CRITICAL level, and tracebacks."""
    bad = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
    return [
        line
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if bad.search(line)
    ]


class RedisServer:
    """A redis-server of the test's own, on a free port, that the test can stop and start.

    The data persists across a stop: an append-only file (fsync on every write) in `directory`,
    no RDB snapshots. A Redis that came back empty would have lost the publish ledger, which
    is not the fault under test (a lost ledger is covered by the signals topic, not Redis).
    `stop()` is `redis-cli shutdown`: Redis flushes the AOF and exits, as on `systemctl stop`.
    """

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed (scripts/ensure-redis.sh installs it)"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    server,
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                    *("--dir", str(self.directory), "--daemonize", "no"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, f"redis-server on {self.port} never answered"
            time.sleep(0.1)

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10) -> None:
        """`redis-cli shutdown`, and wait for the server to exit."""
        assert self.process is not None
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli is needed (it comes with redis-server)"
        subprocess.run([cli, "-p", str(self.port), "shutdown"], capture_output=True, timeout=10)
        self.process.wait(timeout)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

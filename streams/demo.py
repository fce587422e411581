"""`make demo`: broker, worker and a simulated base; prints signals, then the scorecard's top."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal as signals_
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams import present, scorecard
from streams.clock import day_of
from streams.embedded import EmbeddedBroker, free_port
from streams.io.ledger import redacted
from streams.io.topics import FETCH_MAX_WAIT_MS, ensure_topics
from streams.settings import ROOT, Settings
from streams.simulate.wire import malformed
from streams.simulate.world import simulate

TOPICS = {
    "TOPIC_EVENTS": "demo-product-events",
    "TOPIC_SIGNALS": "demo-expansion-signals",
    "TOPIC_DECISIONS": "demo-expansion-decisions",
    "TOPIC_DLQ": "demo-product-events-dlq",
    "TOPIC_OUTCOMES": "demo-expansion-outcomes",
}
REDIS_PREFIX = "expsig-demo:"


def _say(text: str) -> None:
    print(text, flush=True)


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _wait_ready(port: int, worker: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            raise SystemExit("worker exited during start-up:\n" + "\n".join(tail))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"worker not ready after 90 s; see {log_path}")


def _batches(events: list[dict[str, Any]]) -> list[tuple[int, list[tuple[str, list[Any]]]]]:
    """Group events by simulated day, and within a day by account (one message each)."""
    days: dict[int, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    first_day = None
    for event in events:
        day = day_of(_epoch(event["timestamp"]))
        first_day = day if first_day is None else first_day
        days[day - first_day][event["account_id"]].append(event)
    return [(day, list(accounts.items())) for day, accounts in sorted(days.items())]


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp).timestamp()


async def _produce(
    bootstrap: str, topic: str, events: list[dict[str, Any]], seconds: float, seed: int
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    rng = random.Random(seed)
    try:
        days = _batches(events)
        total_days = max(1, days[-1][0] + 1) if days else 1
        started = time.monotonic()
        sent = 0
        for day, accounts in days:
            for account, batch in accounts:
                await producer.send(topic, orjson.dumps({"events": batch}), key=account.encode())
                sent += len(batch)
            if day % 7 == 3:  # a producer bug now and then: the DLQ catches it
                await producer.send(topic, malformed(rng), key=b"bad-producer")
            if day % 15 == 14:
                _say(f"   ... simulated day {day + 1}/{total_days}: {sent:,} events sent")
            pause = started + seconds * (day + 1) / total_days - time.monotonic()
            if pause > 0:
                await producer.flush()
                await asyncio.sleep(pause)
        await producer.flush()
        return sent
    finally:
        await producer.stop()


async def _read_all(
    bootstrap: str, topic: str, partitions: int, out: list[dict[str, Any]], echo: bool
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    item = orjson.loads(record.value)
                    out.append(item)
                    if echo:
                        _say(present.line(item))
    finally:
        await consumer.stop()


async def _run(args: argparse.Namespace, bootstrap: str, partitions: int) -> None:
    _say(f"-- simulating {args.accounts} accounts over {args.days} days (seed {args.seed})")
    events = list(simulate(accounts=args.accounts, days=args.days, seed=args.seed))
    _say(f"-- {len(events):,} events; sending them through Kafka in about {args.seconds:g} s")
    _say("-- signals as they arrive (event date, account, segment, trigger, level -> route, why):")
    signals: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    dlq: list[dict[str, Any]] = []
    readers = [
        asyncio.create_task(
            _read_all(bootstrap, TOPICS["TOPIC_SIGNALS"], partitions, signals, True)
        ),
        asyncio.create_task(
            _read_all(bootstrap, TOPICS["TOPIC_DECISIONS"], partitions, decisions, False)
        ),
        asyncio.create_task(_read_all(bootstrap, TOPICS["TOPIC_DLQ"], partitions, dlq, False)),
    ]
    await _produce(bootstrap, TOPICS["TOPIC_EVENTS"], events, args.seconds, args.seed)
    # let the worker finish: stop when nothing new has arrived for a few seconds
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 5:
        now = len(signals) + len(decisions) + len(dlq)
        if now != seen:
            seen, quiet_since = now, time.monotonic()
        await asyncio.sleep(0.5)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    _summary(signals, decisions, dlq)


def _summary(
    signals: list[dict[str, Any]], decisions: list[dict[str, Any]], dlq: list[dict[str, Any]]
) -> None:
    _say("\n== signals by trigger and route")
    _say(present.table(signals) if signals else "(none)")
    reasons = Counter(d["reason"] for d in decisions)
    _say("\n== fired but not published (expansion-decisions), by reason")
    _say("  ".join(f"{r}: {n}" for r, n in reasons.most_common()) or "(none)")
    rejected = Counter(d["reason"] for d in dlq)
    _say("\n== rejected to the DLQ, by reason")
    _say("  ".join(f"{r}: {n}" for r, n in rejected.most_common()) or "(none)")
    client = redis.Redis.from_url(Settings().redis_url, decode_responses=True)
    top: list[tuple[str, float]] = client.zrevrange(  # type: ignore[assignment]
        f"{REDIS_PREFIX}accounts_by_score", 0, 4, withscores=True
    )
    _say("\n== top accounts in the serving view (Redis sorted set accounts_by_score)")
    for account, score in top:
        primary = orjson.loads(str(client.get(f"{REDIS_PREFIX}primary:{account}") or "{}"))
        _say(
            f"{account:<14} score {score:>3.0f}  {primary.get('trigger')} -> "
            f"{primary.get('route')}  stack {primary.get('signal_stack')}"
        )


def _scorecard(web_port: int, token: str, run_dir: Path) -> None:
    """The top of the scorecard, and the page as the worker serves it."""
    address = f"http://127.0.0.1:{web_port}/scorecard"
    request = urllib.request.Request(
        f"{address}?format=json&top=10", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        rows = orjson.loads(answer.read())
    _say("\n== readiness scorecard, top 10 (python -m streams scorecard; GET /scorecard)")
    _say(scorecard.to_table(rows))
    request = urllib.request.Request(address, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        page = run_dir / "demo-scorecard.html"
        page.write_bytes(answer.read())
    _say(
        f"\nThe page: {address} (while a worker runs, with the header "
        f"'Authorization: Bearer {token}'); as served, saved to {page.as_uri()}"
    )


def _clear_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{REDIS_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams demo", description=__doc__)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seconds", type=float, default=60.0, help="wall time to send the events")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    settings = Settings()
    run_dir = ROOT / ".run"
    broker = None
    if settings.kafka_bootstrap:
        bootstrap = settings.kafka_bootstrap
    else:
        _say("-- starting the embedded Kafka broker (Tansu)")
        broker = EmbeddedBroker(log_dir=run_dir).start()
        bootstrap = broker.bootstrap
    worker = None
    try:
        redis_at = redacted(settings.redis_url)
        _say(f"-- broker {bootstrap}; Redis {redis_at} (demo keys under {REDIS_PREFIX})")
        _clear_redis(settings.redis_url)
        partitions = settings.topic_partitions
        asyncio.run(ensure_topics(bootstrap, list(TOPICS.values()), partitions))
        web_port = free_port()
        token = secrets.token_urlsafe(16)  # this run's only: the scorecard is customer data
        env = {
            **TOPICS,
            "KAFKA_BOOTSTRAP": bootstrap,
            "EMBEDDED_BROKER": "1" if broker else os.environ.get("EMBEDDED_BROKER", "0"),
            "APP_ID": f"expansion-demo-{int(time.time())}",
            "REDIS_PREFIX": REDIS_PREFIX,
            "WEB_PORT": str(web_port),
            "DATA_DIR": str(run_dir / "demo-data"),
            "LOG_LEVEL": "warn",
            "SCORECARD_TOKEN": token,
        }
        log_path = run_dir / "demo-worker.log"
        _say(
            f"-- starting the worker (log: {log_path}, metrics: http://127.0.0.1:{web_port}/metrics)"
        )
        worker = _start_worker(env, log_path)
        _wait_ready(web_port, worker, log_path)
        _say("-- worker ready")
        asyncio.run(_run(args, bootstrap, partitions))
        _scorecard(web_port, token, run_dir)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signals_.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()

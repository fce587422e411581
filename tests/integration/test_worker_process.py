"""The worker process on its own: the broker it starts for itself, and Redis coming late."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from builders import healthy_account, seats
from harness import app_env, broker_kinds

from streams.embedded import free_port
from streams.settings import ROOT


def start_worker(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m streams worker` with exactly this environment, logging to a file."""
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=ROOT,
            env={**env, "DATA_DIR": str(tmp_path / "data")},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log_path


def readyz(port: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
    except OSError:
        return 0, {}


def wait_until(condition, what: str, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, (
            f"{what}\n{log_path.read_text(errors='replace')[-3000:]}"
        )
        time.sleep(0.3)


def accepts(bootstrap: str) -> bool:
    host, port = bootstrap.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def test_without_kafka_bootstrap_the_worker_runs_and_stops_its_own_broker(tmp_path, redis_url):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    port = str(free_port())
    process, log_path = start_worker(tmp_path, {**env, "WEB_PORT": port, "REDIS_URL": redis_url})
    try:
        wait_until(lambda: readyz(port)[0] == 200, "worker never ready", log_path)
        found = re.search(r"embedded Kafka broker \(Tansu\) at (\S+)", log_path.read_text())
        assert found, log_path.read_text()
        bootstrap = found.group(1)
        assert accepts(bootstrap)
    finally:
        code = stop(process)
    assert code == 0, log_path.read_text()[-3000:]
    assert not accepts(bootstrap)


def test_a_worker_without_redis_says_so_once_and_catches_up_when_it_answers(
    tmp_path, worker_factory, kafka_io, kafka_bootstrap
):
    redis_server = shutil.which("redis-server")
    assert redis_server, (
        "redis-server is needed (make test installs it via scripts/ensure-redis.sh)"
    )
    # Reuse a ready worker's topics and settings, pointed at a Redis that is not there yet.
    ready = worker_factory()
    ready.stop()
    redis_port = free_port()
    web_port = str(free_port())
    env = {**ready.env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "WEB_PORT": web_port}
    env["APP_ID"] = env["APP_ID"] + "-noredis"
    process, log_path = start_worker(tmp_path, {**os.environ, **env})
    redis_process = None
    try:
        wait_until(lambda: readyz(web_port)[1].get("partitions"), "never assigned", log_path)
        status, body = readyz(web_port)
        assert (status, body["redis"]) == (503, False)
        events = [
            {
                "event_id": "r1",
                "type": "account_updated",
                "account_id": "late-redis",
                "timestamp": "2026-03-01T00:00:00Z",
                "properties": {"seat_limit": 1, "activated_at": "2025-01-01T00:00:00Z"},
            },
            {
                "event_id": "r2",
                "type": "seat_assigned",
                "account_id": "late-redis",
                "user_id": "u1",
                "timestamp": "2026-03-01T01:00:00Z",
            },
        ]
        kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps({"events": events}), b"late-redis")
        wait_until(lambda: "Redis unreachable" in log_path.read_text(), "no Redis line", log_path)
        time.sleep(3)  # retries go on meanwhile
        log = log_path.read_text()
        assert log.count("Redis unreachable") == 1 and "Traceback" not in log

        redis_process = subprocess.Popen(
            [
                redis_server,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        signals = kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 1, timeout=45)
        assert [orjson.loads(r["value"])["trigger"] for r in signals] == ["seat_saturation"]
        assert "Redis reachable again" in log_path.read_text()
        wait_until(lambda: readyz(web_port)[0] == 200, "never ready with Redis", log_path)
    finally:
        stop(process)
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)


def test_a_worker_on_its_own_broker_creates_its_data_directory_with_its_parents(
    tmp_path, worker_factory
):
    # As `KAFKA_BOOTSTRAP=... python -m streams worker` in a fresh clone: no .run yet.
    data_dir = tmp_path / "fresh-clone" / ".run" / "data"

    worker = worker_factory(DATA_DIR=data_dir)

    assert data_dir.is_dir(), worker.log_tail()


def test_output_topics_made_by_someone_else_may_have_any_partition_count(
    worker_factory, kafka_io, unique_name
):
    # Created by another team or auto-created by the broker, before the worker ever ran.
    outputs = {"TOPIC_SIGNALS": 2, "TOPIC_DECISIONS": 3, "TOPIC_DLQ": 1, "TOPIC_OUTCOMES": 2}
    names = {setting: unique_name(setting.lower()) for setting in outputs}
    for setting, partitions in outputs.items():
        kafka_io.create_topics([names[setting]], partitions=partitions)
    worker = worker_factory(TOPIC_PARTITIONS=4, **names)
    account = "other-counts"

    batch = {"events": [healthy_account(account), *seats(account, 10)]}
    kafka_io.produce(worker.env["TOPIC_EVENTS"], orjson.dumps(batch), key=account.encode())
    kafka_io.produce(worker.env["TOPIC_EVENTS"], b"not json", key=account.encode())

    signals = kafka_io.consume(names["TOPIC_SIGNALS"], lambda r: len(r) >= 1, timeout=30)
    assert [orjson.loads(r["value"])["trigger"] for r in signals] == ["seat_saturation"], (
        worker.log_tail()
    )
    rejected = kafka_io.consume(names["TOPIC_DLQ"], lambda r: len(r) >= 1, timeout=30)
    assert [orjson.loads(r["value"])["reason"] for r in rejected] == ["not_json"]
    assert kafka_io.partitions(names["TOPIC_SIGNALS"]) == [0, 1]
    # a CRM outcome answering the account's primary lands on the outcomes topic
    won = {
        "event_id": "other-counts-won",
        "type": "expansion_outcome",
        "account_id": account,
        "timestamp": "2026-03-03T10:00:00Z",
        "properties": {"stage": "won", "expansion_mrr": 300},
    }
    kafka_io.produce(worker.env["TOPIC_EVENTS"], orjson.dumps(won), key=account.encode())
    answered = kafka_io.consume(names["TOPIC_OUTCOMES"], lambda r: len(r) >= 1, timeout=30)
    assert [orjson.loads(r["value"])["stage"] for r in answered] == ["won"], worker.log_tail()
    assert "Traceback" not in worker.log_path.read_text()


# Tansu does not tell its settings; the check is Kafka's.
@pytest.mark.parametrize("kind", [kind for kind in broker_kinds() if kind == "kafka"])
def test_a_session_timeout_the_broker_refuses_stops_start_up_with_one_line(
    tmp_path, brokers, kind, unique_name
):
    bootstrap = brokers.get(kind).bootstrap
    env = {**os.environ, **app_env(unique_name("app")), "KAFKA_BOOTSTRAP": bootstrap}
    env["BROKER_SESSION_TIMEOUT"] = "4"
    process, log_path = start_worker(tmp_path, {**env, "WEB_PORT": str(free_port())})
    try:
        code = process.wait(60)
    finally:
        stop(process)
    lines = log_path.read_text().splitlines()
    assert code == 3, lines
    assert lines[-1] == (
        f"error: broker {bootstrap} accepts session timeouts of 6-1800s "
        "(group.min/max.session.timeout.ms), not BROKER_SESSION_TIMEOUT=4"
    )

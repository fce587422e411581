"""The worker starts before its broker: one line says so, it waits with backoff, then works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
from builders import healthy_account, seats
from harness import BROKERS, KafkaIO, app_env, broker_kinds

from streams.embedded import free_port
from streams.settings import ROOT

QUIET_SECONDS = 5.0  # how long the worker waits alone before the broker starts


def readyz(port: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait_until(condition, what: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{log_path.read_text(errors='replace')}"
        time.sleep(0.2)


# A broker of the test's own, started late (KAFKA_BOOTSTRAP's cannot be): each kind the
# project starts.
@pytest.mark.parametrize("kind", [kind for kind in broker_kinds() if kind in BROKERS] or ["tansu"])
def test_a_worker_started_before_its_broker_says_so_once_and_works_once_it_answers(
    tmp_path: Path, redis_url: str, kind: str
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    web_port = str(free_port())
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "EMBEDDED_BROKER": "1" if kind == "tansu" else "0",
        "REDIS_URL": redis_url,
        **app_env(f"late-{uuid4().hex[:8]}"),
        "TOPIC_PARTITIONS": "2",
        "WEB_PORT": web_port,
        "DATA_DIR": str(tmp_path / "data"),
        "BROKER_WAIT_SECONDS": "120",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    broker = BROKERS[kind](port=port, log_dir=tmp_path)
    kafka_io: KafkaIO | None = None
    try:
        wait_until(lambda: "not reachable" in log_path.read_text(), "no broker line", log_path, 30)
        time.sleep(max(0.0, QUIET_SECONDS - (time.monotonic() - started)))
        text = log_path.read_text()
        assert worker.poll() is None, text
        assert text.count("not reachable") == 1, text
        assert (
            f"broker {bootstrap} not reachable (ConnectionRefusedError); "
            "retrying with backoff until it answers"
        ) in text
        assert "Traceback" not in text and "Unable connect" not in text, text
        assert readyz(web_port) == 0  # nothing serves yet: the worker waits before Faust starts

        broker.start()
        # the next attempt comes within the backoff's 10 s cap, then Faust starts and joins
        wait_until(lambda: readyz(web_port) == 200, "never ready", log_path, 60)
        text = log_path.read_text()
        assert f"broker {bootstrap} reachable again after " in text, text

        kafka_io = KafkaIO(bootstrap, tansu=kind == "tansu")
        account = "late-broker"
        batch = {"events": [healthy_account(account), *seats(account, 10)]}
        kafka_io.produce(env["TOPIC_EVENTS"], orjson.dumps(batch), key=account.encode())
        records = kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 1, timeout=45)
        signals = [orjson.loads(r["value"]) for r in records]
        assert [(s["account_id"], s["trigger"]) for s in signals] == [
            (account, "seat_saturation")
        ], log_path.read_text()

        text = log_path.read_text()
        assert text.count("not reachable") == 1 and "Traceback" not in text, text
    finally:
        if kafka_io is not None:
            kafka_io.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        broker.stop()
    assert worker.returncode == 0, log_path.read_text()

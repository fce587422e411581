"""Security basics with the real worker: Redis with a password over TLS, secrets that never
show in the log or on the web endpoints, no event data on the endpoints, and a SASL or TLS
set-up the broker does not speak ending start-up with one line.

The embedded broker (Tansu) has no SASL or TLS listener, so the Kafka side is proven by the
unit tests (tests/unit/test_security.py: the arguments and Faust credentials for each
protocol, a TLS handshake with a context built from a generated CA) and, here, by the clear
refusal of a plaintext broker. Redis runs with TLS and a password for real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
import redis
from builders import healthy_account, seats, wait_for_metric
from pki import make_pki

from streams.embedded import free_port
from streams.settings import ROOT

KAFKA_SECRET = "kafka-s3cret-Hq71"
REDIS_SECRET = "redis-s3cret-Vb29"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server of our own with TLS only and a password: (its URL, the CA file)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (make test installs it via scripts/ensure-redis.sh)"
    pki = make_pki(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(pki["cert"]),
            "--tls-key-file",
            str(pki["key"]),
            "--tls-ca-cert-file",
            str(pki["ca"]),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            REDIS_SECRET,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://:{REDIS_SECRET}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(pki["ca"]), socket_timeout=2)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert process.poll() is None, "redis-server with TLS did not start"
            assert time.monotonic() < deadline, "redis-server with TLS does not answer"
            time.sleep(0.1)
    # Without the password it refuses: the worker below really authenticates.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(pki["ca"])).ping()
    client.close()
    yield url, pki["ca"]
    process.terminate()
    process.wait(10)


def body(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


def test_secrets_and_event_data_stay_out_of_logs_and_endpoints(
    worker_factory, kafka_io, tls_redis
) -> None:
    redis_url, ca = tls_redis
    tag = uuid4().hex[:8]
    account = f"acct-{tag}"
    worker = worker_factory(
        REDIS_URL=redis_url,
        REDIS_SSL_CAFILE=ca,
        KAFKA_SASL_PASSWORD=KAFKA_SECRET,  # set but unused: the protocol stays PLAINTEXT
    )
    events = [healthy_account(account), *seats(account, 10)]
    for i, event in enumerate(events):
        event["event_id"] = f"evid-{tag}-{i}"
    user_ids = [event["user_id"] for event in events if "user_id" in event]
    not_json = f'{{"payload-{tag}": '.encode()
    unknown_type = {
        "event_id": f"evid-{tag}-x",
        "type": f"type-{tag}",
        "account_id": account,
        "timestamp": "2026-03-02T12:00:00Z",
    }
    topic = worker.env["TOPIC_EVENTS"]
    kafka_io.produce(topic, orjson.dumps({"events": events}), key=account.encode())
    kafka_io.produce(topic, not_json, key=account.encode())
    kafka_io.produce(topic, orjson.dumps(unknown_type), key=account.encode())

    signals = kafka_io.consume(worker.env["TOPIC_SIGNALS"], lambda r: len(r) >= 1)
    assert [orjson.loads(r["value"])["trigger"] for r in signals] == ["seat_saturation"]
    rejected = kafka_io.consume(worker.env["TOPIC_DLQ"], lambda r: len(r) >= 2)
    assert sorted(orjson.loads(r["value"])["reason"] for r in rejected) == [
        "not_json",
        "unknown_type",
    ]
    wait_for_metric(worker, 'expansion_events_rejected_total{reason="unknown_type"} 1.0')
    # The serving view is in the TLS Redis, reached with the password.
    client = redis.Redis.from_url(redis_url, ssl_ca_certs=str(ca))
    assert client.get(f"{worker.env['REDIS_PREFIX']}primary:{account}") is not None
    client.close()

    endpoints = {path: body(f"{worker.url}{path}") for path in ("/metrics", "/healthz", "/readyz")}
    assert orjson.loads(endpoints["/readyz"])["redis"] is True
    worker.stop()
    log = worker.log_path.read_text()
    for where, text in {**endpoints, "the log": log}.items():
        assert KAFKA_SECRET not in text, where
        assert REDIS_SECRET not in text, where
    data = [account, tag, *user_ids, not_json.decode(), unknown_type["type"]]
    for where, text in endpoints.items():
        leaked = [item for item in data if item in text]
        assert not leaked, f"{where} shows event data: {leaked}"
    assert "KAFKA_SASL_* are set but not used: KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in log
    assert f"Redis rediss://127.0.0.1:{redis_url.rsplit(':', 1)[1]}" in log  # without password


def run_worker(tmp_path: Path, kafka_bootstrap: str, **env: str) -> subprocess.CompletedProcess:
    app_id = f"sec-{uuid4().hex[:8]}"
    return subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "APP_ID": app_id,
            "TOPIC_EVENTS": f"{app_id}-events",
            "WEB_PORT": str(free_port()),
            "DATA_DIR": str(tmp_path / "data"),
            **env,
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=90,
    )


def test_sasl_against_a_broker_without_it_ends_start_up_with_one_line(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    done = run_worker(
        tmp_path,
        kafka_bootstrap,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="detector",
        KAFKA_SASL_PASSWORD=KAFKA_SECRET,
    )

    assert done.returncode == 3
    # Tansu answers the handshake with an error, Apache Kafka with one of its own.
    [line] = done.stdout.splitlines()
    assert re.fullmatch(
        f"error: broker {re.escape(kafka_bootstrap)} rejected the client's SASL set-up "
        r"\((UnsupportedSaslMechanismError|IllegalSaslStateError)\); check "
        "KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM and the credentials",
        line,
    ), line


def test_tls_against_a_plaintext_broker_says_so_and_gives_up_after_the_wait(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    done = run_worker(
        tmp_path,
        kafka_bootstrap,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="PLAIN",
        KAFKA_SASL_USERNAME="detector",
        KAFKA_SASL_PASSWORD=KAFKA_SECRET,
        BROKER_WAIT_SECONDS="1",
    )

    assert done.returncode == 3
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    # Tansu leaves the TLS handshake unanswered; Apache Kafka drops the connection.
    assert re.search(
        f"WARNING streams.io.topics broker {re.escape(kafka_bootstrap)} accepts connections "
        r"but its Kafka requests fail \((TimeoutError|ConnectionResetError)\); retrying with "
        r"backoff until it answers \(does KAFKA_SECURITY_PROTOCOL match it\?\)$",
        lines[0],
    ), lines[0]
    # Tansu's handshake takes the whole wait: Kafka's is refused at once, and tried again.
    assert re.match(
        f"error: broker {re.escape(kafka_bootstrap)} not reachable after [0-9]+ attempts? ",
        lines[1],
    ), lines[1]
    assert KAFKA_SECRET not in done.stdout and "Traceback" not in done.stdout

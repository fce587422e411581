"""SASL/TLS settings, the Kafka client arguments built from them, secrets kept out of output,
and the start-up wait for the broker (backoff schedule, one line per outage).

No broker and no Redis: certificates are made here with the openssl command line, and the
broker is a port where nothing listens or a socket that hangs up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pki import make_pki
from pydantic import ValidationError
from redis.asyncio.connection import parse_url

from streams.embedded import free_port
from streams.io import kafka_security
from streams.io.backoff import FIRST_DELAY, JITTER, MAX_DELAY, backoff_delays
from streams.io.ledger import redacted
from streams.io.topics import BrokerUnavailable, ensure_topics
from streams.settings import ROOT, Settings

KAFKA_SECRET = "kafka-pw-Zq8x"
REDIS_SECRET = "redis-pw-Jt4v"
SECURITY_ENV = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "REDIS_URL",
    "REDIS_SSL_CAFILE",
)


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the shell running the tests has set does not leak into these settings."""
    for name in SECURITY_ENV:
        monkeypatch.delenv(name, raising=False)


def settings(**env: str | Path) -> Settings:
    return Settings(**{name.lower(): value for name, value in env.items()})  # type: ignore[arg-type]


def bad_setting(**env: str | Path) -> tuple[str, str, str]:
    """(setting name, message, the whole error text) of the first problem in `env`."""
    with pytest.raises(ValidationError) as caught:
        settings(**env)
    problem = caught.value.errors()[0]
    return ".".join(map(str, problem["loc"])).upper(), problem["msg"], str(caught.value)


SASL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "detector",
    "KAFKA_SASL_PASSWORD": KAFKA_SECRET,
}


# ----------------------------------------------------------------------------- settings


def test_defaults_are_plaintext_without_credentials() -> None:
    plain = settings()
    assert plain.kafka_security_protocol == "PLAINTEXT"
    assert plain.broker_wait_seconds == 300
    assert kafka_security.aiokafka_kwargs(plain) == {"security_protocol": "PLAINTEXT"}
    assert kafka_security.faust_credentials(plain) is None
    assert credentials_to_aiokafka_auth(None) == {"security_protocol": "PLAINTEXT"}


def test_settings_come_from_the_documented_environment_names(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",  # any case
        "KAFKA_SASL_MECHANISM": "scram-sha-256",
        "KAFKA_SASL_USERNAME": "detector",
        "KAFKA_SASL_PASSWORD": KAFKA_SECRET,
        "KAFKA_SSL_CAFILE": str(pki["ca"]),
        "KAFKA_SSL_CERTFILE": str(pki["cert"]),
        "KAFKA_SSL_KEYFILE": str(pki["key"]),
        "REDIS_URL": f"rediss://:{REDIS_SECRET}@127.0.0.1:6380/0",
        "REDIS_SSL_CAFILE": str(pki["ca"]),
        "BROKER_WAIT_SECONDS": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    loaded = Settings()

    assert loaded.kafka_security_protocol == "SASL_SSL"
    assert loaded.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert loaded.kafka_sasl_username == "detector"
    assert loaded.kafka_sasl_password is not None
    assert loaded.kafka_sasl_password.get_secret_value() == KAFKA_SECRET
    assert (loaded.kafka_ssl_cafile, loaded.kafka_ssl_certfile, loaded.kafka_ssl_keyfile) == (
        pki["ca"],
        pki["cert"],
        pki["key"],
    )
    assert loaded.broker_wait_seconds == 0


def test_empty_values_mean_unset() -> None:
    loaded = settings(KAFKA_SASL_PASSWORD="", KAFKA_SSL_CAFILE="", KAFKA_SASL_MECHANISM=" ")
    assert loaded.kafka_sasl_password is None
    assert loaded.kafka_ssl_cafile is None
    assert loaded.kafka_sasl_mechanism is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize(
    "missing", ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"]
)
def test_sasl_needs_mechanism_username_and_password(protocol: str, missing: str) -> None:
    env = {**SASL, "KAFKA_SECURITY_PROTOCOL": protocol}
    del env[missing]

    name, message, _ = bad_setting(**env)

    assert name == missing
    assert message == f"Value error, required when KAFKA_SECURITY_PROTOCOL={protocol}"


@pytest.mark.parametrize(
    ("env", "name", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL", "Input should be"),
        ({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM", "Input should be"),
        ({"BROKER_WAIT_SECONDS": "-1"}, "BROKER_WAIT_SECONDS", "greater than or equal to 0"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE",
            "no such file: /nonexistent/ca.pem",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": ROOT / "pyproject.toml"},
            "KAFKA_SSL_CAFILE",
            "is not a PEM CA bundle",
        ),
        (
            {"REDIS_URL": "redis://127.0.0.1:6380/0", "REDIS_SSL_CAFILE": "/nonexistent"},
            "REDIS_SSL_CAFILE",
            "needs a rediss:// REDIS_URL",
        ),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL", "must start with redis://"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], name: str, message: str) -> None:
    found_name, found_message, _ = bad_setting(**env)
    assert found_name == name
    assert message in found_message


def test_tls_files_need_a_tls_protocol_and_a_matching_key(pki: dict[str, Path]) -> None:
    name, message, _ = bad_setting(KAFKA_SSL_CAFILE=pki["ca"])
    assert (name, message) == (
        "KAFKA_SSL_CAFILE",
        "Value error, needs KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL, not PLAINTEXT",
    )
    ssl_only = {"KAFKA_SECURITY_PROTOCOL": "SSL"}
    name, message, _ = bad_setting(**ssl_only, KAFKA_SSL_CERTFILE=pki["cert"])
    assert (name, message) == ("KAFKA_SSL_KEYFILE", "Value error, required with KAFKA_SSL_CERTFILE")
    name, message, _ = bad_setting(**ssl_only, KAFKA_SSL_KEYFILE=pki["key"])
    assert (name, message) == ("KAFKA_SSL_KEYFILE", "Value error, needs KAFKA_SSL_CERTFILE too")
    name, message, _ = bad_setting(
        **ssl_only, KAFKA_SSL_CERTFILE=pki["cert"], KAFKA_SSL_KEYFILE=pki["other-key"]
    )
    assert name == "KAFKA_SSL_KEYFILE"
    assert message.startswith(f"Value error, cannot load the certificate {pki['cert']}")


# ----------------------------------------------------------------------------- client arguments


def test_sasl_plaintext_arguments_for_aiokafka_and_faust() -> None:
    configured = settings(**SASL)

    kwargs = kafka_security.aiokafka_kwargs(configured)
    credentials = kafka_security.faust_credentials(configured)

    assert kwargs == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "detector",
        "sasl_plain_password": KAFKA_SECRET,
    }
    assert isinstance(credentials, faust.SASLCredentials)
    # What Faust's aiokafka driver hands its consumers and producers: the same set-up.
    assert credentials_to_aiokafka_auth(credentials) == {**kwargs, "ssl_context": None}
    assert KAFKA_SECRET not in repr(credentials)


def test_sasl_ssl_uses_a_context_that_trusts_the_given_ca(pki: dict[str, Path]) -> None:
    configured = settings(
        **{**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
        KAFKA_SSL_CAFILE=pki["ca"],
    )

    kwargs = kafka_security.aiokafka_kwargs(configured)
    credentials = kafka_security.faust_credentials(configured)

    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "detector",
        "sasl_plain_password": KAFKA_SECRET,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()] == [
        {"commonName": "expsig test CA"}
    ]
    assert isinstance(credentials, faust.SASLCredentials)
    faust_kwargs = credentials_to_aiokafka_auth(credentials)
    assert faust_kwargs["security_protocol"] == "SASL_SSL"
    assert faust_kwargs["sasl_plain_password"] == KAFKA_SECRET
    assert isinstance(faust_kwargs["ssl_context"], ssl.SSLContext)


def test_ssl_with_a_client_certificate(pki: dict[str, Path]) -> None:
    configured = settings(
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=pki["ca"],
        KAFKA_SSL_CERTFILE=pki["cert"],
        KAFKA_SSL_KEYFILE=pki["key"],
    )

    kwargs = kafka_security.aiokafka_kwargs(configured)
    credentials = kafka_security.faust_credentials(configured)

    assert sorted(kwargs) == ["security_protocol", "ssl_context"]
    assert kwargs["security_protocol"] == "SSL"
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"
    assert "client certificate" in kafka_security.describe(configured)


def test_ssl_without_a_ca_file_trusts_the_system_cas() -> None:
    context = kafka_security.ssl_context(settings(KAFKA_SECURITY_PROTOCOL="SSL"))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED


def test_the_client_context_completes_a_handshake_with_a_server_of_that_ca(
    pki: dict[str, Path],
) -> None:
    """The context really verifies: a TLS server with a certificate of the CA is accepted."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki["cert"], pki["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with server_context.wrap_socket(connection, server_side=True) as tls:
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    context = kafka_security.ssl_context(
        settings(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=pki["ca"])
    )
    assert context is not None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.recv(2) == b"ok"
    finally:
        thread.join(5)
        listener.close()


# ----------------------------------------------------------------------------- Redis URL


def test_redis_ca_file_reaches_redis_py_through_the_url(pki: dict[str, Path]) -> None:
    configured = settings(
        REDIS_URL=f"rediss://:{REDIS_SECRET}@127.0.0.1:6380/2", REDIS_SSL_CAFILE=pki["ca"]
    )

    parsed = parse_url(configured.redis_url)

    assert parsed["password"] == REDIS_SECRET
    assert parsed["ssl_ca_certs"] == str(pki["ca"])
    assert parsed["db"] == 2
    assert parsed["connection_class"].__name__ == "SSLConnection"
    assert redacted(configured.redis_url) == "rediss://127.0.0.1:6380/2"


# ----------------------------------------------------------------------------- no secret in output


def test_no_secret_in_the_settings_repr_or_validation_errors() -> None:
    configured = settings(**SASL, REDIS_URL=f"redis://:{REDIS_SECRET}@127.0.0.1:6379/0")
    for text in (repr(configured), str(configured)):
        assert KAFKA_SECRET not in text and REDIS_SECRET not in text

    # A ValidationError's text quotes inputs unless told not to: a bad URL with a password,
    # or any other problem while the password is set, must not show them.
    _, _, text = bad_setting(REDIS_URL=f"http://:{REDIS_SECRET}@127.0.0.1:6379/0")
    assert REDIS_SECRET not in text
    _, _, text = bad_setting(**{**SASL, "KAFKA_SECURITY_PROTOCOL": "nope"})
    assert KAFKA_SECRET not in text and "nope" not in text


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"REDIS_URL": f"http://:{REDIS_SECRET}@127.0.0.1:6379/0"},
            "error: bad setting REDIS_URL: must start with redis://, rediss:// (TLS) or unix://",
        ),
        (
            {**SASL, "KAFKA_SASL_USERNAME": ""},
            "error: bad setting KAFKA_SASL_USERNAME: required when "
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        ),
        (
            {**SASL, "KAFKA_SASL_MECHANISM": KAFKA_SECRET},
            "error: bad setting KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' "
            "or 'SCRAM-SHA-512'",
        ),
    ],
)
def test_the_worker_reports_a_bad_setting_in_one_line_without_its_value(
    env: dict[str, str], line: str
) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in SECURITY_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == line + "\n"


# ----------------------------------------------------------------------------- broker wait


def test_backoff_doubles_from_half_a_second_to_ten_with_jitter() -> None:
    middle = backoff_delays(rng=lambda: 0.5)
    assert [next(middle) for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]
    low, high = backoff_delays(rng=lambda: 0.0), backoff_delays(rng=lambda: 1.0)
    assert [round(next(low), 6) for _ in range(6)] == [0.45, 0.9, 1.8, 3.6, 7.2, 9.0]
    assert [round(next(high), 6) for _ in range(6)] == [0.55, 1.1, 2.2, 4.4, 8.8, 11.0]
    assert (FIRST_DELAY, MAX_DELAY, JITTER) == (0.5, 10.0, 0.1)

    jittered = backoff_delays()
    delays = [next(jittered) for _ in range(50)]
    nominal = [min(10.0, 0.5 * 2**i) for i in range(50)]
    assert all(n * 0.9 <= d <= n * 1.1 for d, n in zip(delays, nominal, strict=True))
    assert len(set(delays[10:])) > 1  # not in step with another worker's


def test_a_missing_broker_gets_one_warning_then_the_error_after_the_patience(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.DEBUG)

    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        asyncio.run(ensure_topics(bootstrap, ["events"], 2, wait_seconds=2.0))
    took = time.monotonic() - started

    assert 1.9 <= took < 4
    assert str(caught.value).startswith(f"broker {bootstrap} not reachable after ")
    assert "ConnectionRefusedError" in str(caught.value)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in noisy] == [
        f"broker {bootstrap} not reachable (ConnectionRefusedError); "
        "retrying with backoff until it answers"
    ]
    assert noisy[0].exc_info is None
    retries = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert 2 <= len(retries) <= 4  # 0.5 s, 1 s, then the rest of the 2 s


def test_zero_patience_waits_for_ever(caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"

    async def attempt() -> None:
        await asyncio.wait_for(ensure_topics(bootstrap, ["events"], 2, wait_seconds=0), 3)

    with pytest.raises(TimeoutError):
        asyncio.run(attempt())
    assert sum("not reachable" in r.getMessage() for r in caplog.records) == 1


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """A TCP listener that closes every connection at once: up, but no Kafka broker."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(2)
    listener.close()


def test_a_listener_that_is_no_kafka_broker_is_named_once_without_aiokafka_noise(
    hangs_up: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    with pytest.raises(BrokerUnavailable, match=f"broker {hangs_up} not reachable after"):
        asyncio.run(ensure_topics(hangs_up, ["events"], 2, wait_seconds=1.5))

    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) == 1, noisy
    assert noisy[0].startswith(f"broker {hangs_up} accepts connections but its Kafka requests fail")
    assert "KAFKA_SECURITY_PROTOCOL" in noisy[0]

"""Shared fixtures: brokers and Redis started once per session, isolated by unique names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from harness import BROKERS, KafkaIO, Worker, app_env, broker_kinds

from streams.embedded import BrokerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "tests" / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Broker:
    """A broker the tests run against. `tansu`: the worker runs with EMBEDDED_BROKER=1."""

    kind: str  # "tansu", "kafka" or "outside" (KAFKA_BOOTSTRAP)
    bootstrap: str
    tansu: bool


class Brokers:
    """The session's brokers, each started when a test first needs it and kept until the end:
    pytest runs the tests broker by broker, but a test may still come back to the first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: dict[str, BrokerProcess] = {}

    def get(self, kind: str) -> Broker:
        if kind == "outside":
            # An outside broker may be a Tansu too; whoever runs the tests then says so.
            tansu = os.environ.get("EMBEDDED_BROKER", "0") == "1"
            return Broker(kind, os.environ["KAFKA_BOOTSTRAP"], tansu)
        if kind not in self.running:
            self.running[kind] = BROKERS[kind](log_dir=self.directory).start()
        return Broker(kind, self.running[kind].bootstrap, tansu=kind == "tansu")

    def stop(self) -> None:
        for process in self.running.values():
            process.stop()


@pytest.fixture(scope="session")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Brokers]:
    started = Brokers(tmp_path_factory.mktemp("brokers"))
    yield started
    started.stop()


@pytest.fixture(scope="session", params=broker_kinds())
def broker(request: pytest.FixtureRequest, brokers: Brokers) -> Broker:
    """The broker of this run of the test: each test that needs one runs on every kind."""
    return brokers.get(request.param)


@pytest.fixture(scope="session")
def kafka_bootstrap(broker: Broker) -> str:
    """host:port of the test's broker."""
    return broker.bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    """REDIS_URL (default the local Redis), checked to answer."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis at {url} does not answer ({exc}); `make test` starts one with "
            "scripts/ensure-redis.sh, or set REDIS_URL",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make names no other test uses, for topics, app ids and Redis prefixes."""

    def make(prefix: str = "test") -> str:
        return f"{prefix}-{uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def kafka_io(broker: Broker) -> Iterator[KafkaIO]:
    io = KafkaIO(broker.bootstrap, broker.tansu)
    yield io
    io.close()


@pytest.fixture
def worker_factory(
    broker: Broker,
    redis_url: str,
    unique_name: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Worker]]:
    """Start real worker processes and wait until each is ready; stop them all afterwards.

    `worker_factory(**env)` starts a worker with its own app id, topics and Redis prefix;
    `worker_factory(like=other, **env)` starts one more member of `other`'s app (same
    topics, app id and prefix; its own web port and data dir), e.g. a restart after a kill.
    Keyword arguments override environment variables by name (TOPIC_PARTITIONS=2, ...).
    """
    workers: list[Worker] = []

    def start(like: Worker | None = None, **overrides: object) -> Worker:
        workdir = tmp_path_factory.mktemp("worker")
        if like is not None:
            env = dict(like.env)
        else:
            env = {
                "KAFKA_BOOTSTRAP": broker.bootstrap,
                "REDIS_URL": redis_url,
                "EMBEDDED_BROKER": "1" if broker.tansu else "0",
                **app_env(unique_name("app")),
                "TOPIC_PARTITIONS": "4",
            }
        env["WEB_PORT"] = str(free_port())
        env["DATA_DIR"] = str(workdir / "data")
        env.update({name: str(value) for name, value in overrides.items()})

        log_path = workdir / "worker.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A Ctrl-C on the test run reaches only pytest, which stops workers itself.
                start_new_session=True,
            )
        worker = Worker(env=env, log_path=log_path, process=process)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()

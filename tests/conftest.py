"""Shared fixtures: one broker and one Redis per session, isolated per test by unique names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from harness import KafkaIO, Worker, app_env

from streams.embedded import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "tests" / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of the session's broker: KAFKA_BOOTSTRAP, or an embedded Tansu."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap


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
def kafka_io(kafka_bootstrap: str) -> Iterator[KafkaIO]:
    io = KafkaIO(kafka_bootstrap)
    yield io
    io.close()


@pytest.fixture
def worker_factory(
    kafka_bootstrap: str,
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
    # An outside broker may be a Tansu too; whoever runs the tests then says so.
    embedded_broker = (
        os.environ.get("EMBEDDED_BROKER", "0") if os.environ.get("KAFKA_BOOTSTRAP") else "1"
    )

    def start(like: Worker | None = None, **overrides: object) -> Worker:
        workdir = tmp_path_factory.mktemp("worker")
        if like is not None:
            env = dict(like.env)
        else:
            env = {
                "KAFKA_BOOTSTRAP": kafka_bootstrap,
                "REDIS_URL": redis_url,
                "EMBEDDED_BROKER": embedded_broker,
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

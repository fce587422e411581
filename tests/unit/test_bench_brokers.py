"""The bench's latency phase reads and fetches as suits the broker kind it runs on."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import bench.__main__ as bench_main
from bench.detector import Context, reader_config


def context(tansu: bool, tmp_path: Path) -> Context:
    return Context(
        run_id="bench-test",
        bootstrap="127.0.0.1:9",
        broker_pid=1,
        tansu=tansu,
        redis_url="redis://127.0.0.1:6379/0",
        partitions=8,
        workdir=tmp_path,
    )


class StartedBroker:
    """Stands in for a broker process: notes that one was started and stopped."""

    started: list[StartedBroker] = []

    def __init__(self, log_dir: Path) -> None:
        self.bootstrap = "127.0.0.1:10"
        self.process = SimpleNamespace(pid=2)
        self.stopped = False

    def __enter__(self) -> StartedBroker:
        StartedBroker.started.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped = True


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[StartedBroker]:
    StartedBroker.started = []
    monkeypatch.setitem(bench_main.BROKERS, "tansu", StartedBroker)
    monkeypatch.setitem(bench_main.BROKERS, "kafka", StartedBroker)
    return StartedBroker.started


def new_bench(broker: str, tmp_path: Path) -> bench_main.Bench:
    return bench_main.Bench(
        bench_main.parse(["--quick", "--broker", broker]), "bench-test", tmp_path
    )


def test_each_tansu_latency_run_has_a_broker_of_its_own(
    started: list[StartedBroker], tmp_path: Path
) -> None:
    run = context(tansu=True, tmp_path=tmp_path)
    with new_bench("tansu", tmp_path).latency_broker(run) as own:
        assert (own.bootstrap, own.broker_pid) == ("127.0.0.1:10", 2)
    assert len(started) == 1 and started[0].stopped


def test_kafka_latency_runs_use_the_runs_warm_broker(
    started: list[StartedBroker], tmp_path: Path
) -> None:
    run = context(tansu=False, tmp_path=tmp_path)
    with new_bench("kafka", tmp_path).latency_broker(run) as own:
        assert own == run
    assert started == []


def test_the_signal_reader_waits_briefly_in_a_fetch_only_on_tansu() -> None:
    # Tansu answers a fetch when its wait runs out; Kafka as soon as a record arrives, so
    # there librdkafka's own wait costs no latency and spares the broker empty fetches.
    assert reader_config("b:1", "signals", tansu=True)["fetch.wait.max.ms"] == 5
    kafka = reader_config("b:1", "signals", tansu=False)
    assert "fetch.wait.max.ms" not in kafka
    assert kafka["fetch.min.bytes"] == 1

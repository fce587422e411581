"""The ceilings beside the worker: plain aiokafka, a no-op and a decode-only Faust agent."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.infra import READY_TIMEOUT, BenchError, CpuMeter, log_tail, say, spawn, stop
from streams.embedded import free_port


async def _consume(bootstrap: str, topic: str, partitions: int, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        count = 0
        deadline = time.monotonic() + 120
        # from the first fetch on: with a small topic, most records come in the first ones
        started = time.perf_counter()
        while count < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"raw consumer read only {count:,} of {expected:,} records")
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)  # type: ignore[arg-type]
                count += len(records)
        return expected / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def raw_consume(
    bootstrap: str, broker_pid: int, topic: str, partitions: int, expected: int
) -> dict[str, Any]:
    """Events per second a plain consumer reads and JSON-decodes, first fetch to last record."""
    cpu = CpuMeter({"broker": broker_pid})
    cpu.start()
    eps = asyncio.run(_consume(bootstrap, topic, partitions, expected))
    return {"eps": eps, "cpu": cpu.read()}


def faust_noop(
    bootstrap: str,
    broker_pid: int,
    topic: str,
    partitions: int,
    expected: int,
    name: str,
    workdir: Path,
    tansu: bool,
    decoding: bool = False,
) -> dict[str, Any]:
    """Events per second through a Faust agent that does nothing (or only decodes each
    message, with `decoding`), first message to last.

    The CPU shares cover the no-op worker's whole life, start-up included.
    """
    env = {
        "KAFKA_BOOTSTRAP": bootstrap,
        "EMBEDDED_BROKER": "1" if tansu else "0",
        "APP_ID": name,
        "TOPIC_EVENTS": topic,
        "TOPIC_PARTITIONS": str(partitions),
        "WEB_PORT": str(free_port()),
        "DATA_DIR": str(workdir / name / "data"),
        "BENCH_EXPECT": str(expected),
        "BENCH_DECODE": "1" if decoding else "0",
    }
    log_path = workdir / name / "noop.log"
    result_path = workdir / name / "result.json"
    env["BENCH_RESULT"] = str(result_path)
    process = spawn([sys.executable, "-m", "bench.noop_worker"], env, log_path)
    cpu = CpuMeter({"noop": process.pid, "broker": broker_pid})
    cpu.start()
    try:
        started = time.monotonic()
        # start-up and the group's first rebalance, then the topic at the agent's pace
        deadline = started + READY_TIMEOUT + expected / 1000
        while time.monotonic() < deadline:
            if result_path.exists():
                result = orjson.loads(result_path.read_bytes())
                eps = float(result["after_first"]) / float(result["seconds"])
                return {"eps": eps, "cpu": cpu.read()}
            if process.poll() is not None:
                raise BenchError(
                    f"no-op Faust worker exited with code {process.returncode}; "
                    f"last lines of {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.2)
        raise BenchError(f"no-op Faust worker did not finish; see {log_path}")
    finally:
        say(f"  stopping no-op worker {name}")
        stop(process)

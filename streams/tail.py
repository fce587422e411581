"""python -m streams tail: signals printed as they arrive, in the demo's words."""

from __future__ import annotations

import argparse
import asyncio
import signal as signals
import sys
from typing import Any, get_args

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import present
from streams.io import kafka_security
from streams.io.topics import FETCH_MAX_WAIT_MS, existing_partitions
from streams.logs import fatal
from streams.settings import Settings
from streams.signals import Route
from streams.sink.formats import account_context


def render(signal: dict[str, Any]) -> str:
    """The demo's line, and the account context under it when the signal carries one."""
    context = account_context(signal)
    return present.line(signal) + (f"\n      account: {context}" if context else "")


def wanted(signal: dict[str, Any], route: str | None, account: str | None) -> bool:
    return (route is None or signal.get("route") == route) and (
        account is None or signal.get("account_id") == account
    )


async def _tail(
    settings: Settings, route: str | None, account: str | None, from_beginning: bool
) -> None:
    # No consumer group: tail reads every partition, commits nothing and disturbs no one.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **kafka_security.aiokafka_kwargs(settings),
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signals.SIGTERM, signals.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await consumer.start()
    try:
        security = kafka_security.aiokafka_kwargs(settings)
        topic = settings.topic_signals
        found = await existing_partitions(settings.kafka_bootstrap or "", [topic], security)
        if topic not in found:
            raise LookupError(f"no topic {topic} on {settings.kafka_bootstrap}")
        assigned = [TopicPartition(topic, p) for p in range(found[topic])]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        for tp in assigned:  # fixes the positions now: signals sent from here on are shown
            await consumer.position(tp)
        where = "the beginning" if from_beginning else "now"
        print(f"-- signals on {settings.topic_signals} from {where}", file=sys.stderr, flush=True)
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    try:
                        signal = orjson.loads(record.value or b"")
                        if wanted(signal, route, account):
                            print(render(signal), flush=True)
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        print(
                            f"-- not a signal at partition {record.partition} offset "
                            f"{record.offset}",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        await consumer.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams tail",
        description="Print signals as they arrive (KAFKA_BOOTSTRAP, TOPIC_SIGNALS).",
    )
    parser.add_argument("--route", choices=get_args(Route), help="only signals of this route")
    parser.add_argument("--account", help="only signals of this account_id")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest signal kept"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.kafka_bootstrap:
        return fatal("KAFKA_BOOTSTRAP is not set: tail reads a running broker", "text", code=2)
    try:
        asyncio.run(_tail(settings, args.route, args.account, args.from_beginning))
    except LookupError as error:
        return fatal(str(error), "text", code=3)
    except BrokenPipeError:  # `tail | head` closed its end
        pass
    return 0

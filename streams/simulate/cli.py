"""`python -m streams simulate`: write a simulated run to a JSONL file, to Kafka, or both."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import BinaryIO

import orjson
from aiokafka.errors import KafkaError

from streams.events import MAX_BATCH_EVENTS
from streams.io.topics import BrokerUnavailable, TopicCreationError
from streams.progress import Progress
from streams.simulate.wire import Pacer, frames, produce, write
from streams.simulate.world import Simulation


def _start_date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


def main(argv: list[str]) -> int:
    """Write a simulated run to JSONL and/or Kafka: `python -m streams simulate --out FILE`."""
    parser = argparse.ArgumentParser(
        prog="python -m streams simulate",
        description="Write a seeded simulated customer base as contract events, to a JSONL "
        "file, to a Kafka topic, or both; and the expansions it led to.",
    )
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--start",
        type=_start_date,
        help="first simulated day, YYYY-MM-DD (default: DAYS days before today, UTC)",
    )
    parser.add_argument("--out", help="events file (JSONL); '-' for stdout")
    parser.add_argument(
        "--kafka",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="send the events to Kafka, keyed by account_id (default broker: KAFKA_BOOTSTRAP)",
    )
    parser.add_argument("--topic", help="topic for --kafka (default: TOPIC_EVENTS)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="EVENTS_PER_SECOND",
        help="pace the output to this many events per second (default 0: as fast as possible)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        metavar="N",
        help="put up to N events of one account in each message, as a batch envelope "
        "(default 1: one event per line)",
    )
    parser.add_argument("--outcomes", help="write the expansion outcomes here (JSONL)")
    parser.add_argument(
        "--bad-fraction",
        type=float,
        default=0.0,
        help="share of extra malformed lines mixed in, for DLQ demos (default 0)",
    )
    parser.add_argument("--duplicate-fraction", type=float, default=0.005)
    args = parser.parse_args(argv)
    if args.accounts < 0 or args.days < 0:
        parser.error("--accounts and --days must not be negative")
    if args.out is None and args.kafka is None:
        parser.error("say where the events go: --out FILE, --kafka [HOST:PORT], or both")
    if args.rate < 0:
        parser.error("--rate must not be negative")
    if not 1 <= args.batch <= MAX_BATCH_EVENTS:
        parser.error(f"--batch must be 1..{MAX_BATCH_EVENTS}")
    bootstrap = topic = ""
    if args.kafka is not None:
        from streams.settings import Settings

        settings = Settings()
        bootstrap = args.kafka or settings.kafka_bootstrap or ""
        topic = args.topic or settings.topic_events
        if not bootstrap:
            parser.error("--kafka needs HOST:PORT, or KAFKA_BOOTSTRAP in the environment")

    simulation = Simulation(
        args.accounts,
        args.days,
        args.seed,
        args.start,
        duplicate_fraction=args.duplicate_fraction,
    )
    pacer = Pacer(args.rate)
    bar = Progress("simulate", args.days)

    def progress(day: int, days: int) -> None:
        elapsed = max(time.monotonic() - pacer.started, 1e-9)
        bar.update(
            day, f"day {day}/{days}, {pacer.sent:,} events, {pacer.sent / elapsed:,.0f} events/s"
        )

    outgoing = frames(simulation.events(progress), args.batch, args.bad_fraction, args.seed)
    out: BinaryIO | None = None
    try:
        if args.out == "-":
            out = sys.stdout.buffer
        elif args.out is not None:
            out = open(args.out, "wb")  # closed below, after Kafka too
        if args.kafka is not None:
            asyncio.run(produce(outgoing, bootstrap, topic, out, pacer))
        else:
            assert out is not None
            write(outgoing, out, pacer)
    except (OSError, KafkaError, BrokerUnavailable, TopicCreationError) as error:
        bar.close()
        print(f"error: simulate: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        bar.close()
        return 130
    finally:
        if out is sys.stdout.buffer:
            out.flush()
        elif out is not None:
            out.close()
    bar.close()
    if args.outcomes:
        with open(args.outcomes, "wb") as file:
            for outcome in simulation.outcomes:
                file.write(orjson.dumps(outcome) + b"\n")
    where = " and ".join(
        part
        for part in (
            args.out and ("stdout" if args.out == "-" else args.out),
            args.kafka is not None and f"Kafka {bootstrap} topic {topic}",
        )
        if part
    )
    print(
        f"simulate: wrote {pacer.sent:,} events"
        + (f" in {pacer.messages:,} messages" if args.batch > 1 else "")
        + f" for {args.accounts} accounts over {args.days} days to {where}"
        + (f", {len(simulation.outcomes)} outcomes to {args.outcomes}" if args.outcomes else ""),
        file=sys.stderr,
    )
    return 0

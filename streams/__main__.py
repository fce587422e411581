"""Command line: python -m streams worker|demo|simulate|broker."""

from __future__ import annotations

import asyncio
import logging
import sys

USAGE = """usage: python -m streams COMMAND [options]

commands:
  worker     run the detector (KAFKA_BOOTSTRAP, REDIS_URL, RULES_FILE from the environment;
             without KAFKA_BOOTSTRAP it starts an embedded broker for itself)
  demo       embedded broker + worker + a simulated customer base; prints signals
  simulate   write a simulated customer base as contract events (JSON lines)
  broker     run the embedded Kafka-compatible broker (Tansu) in the foreground
"""


def worker(argv: list[str]) -> int:
    """Start the detector worker; a bad rules file or no broker ends it with one line."""
    import faust

    from streams.app import create_app
    from streams.embedded import EmbeddedBroker
    from streams.io.topics import BrokerUnavailable, TopicCreationError, ensure_topics
    from streams.rules import RulesError, load
    from streams.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings()
    try:
        rules = load(settings.rules_file)
    except RulesError as error:
        print(f"error: bad rules file: {error}", file=sys.stderr)
        return 2
    broker = None
    if not settings.kafka_bootstrap:
        broker = EmbeddedBroker(log_dir=settings.data_dir.parent).start()
        print(f"embedded Kafka broker (Tansu) at {broker.bootstrap}", file=sys.stderr)
        settings = settings.model_copy(
            update={"kafka_bootstrap": broker.bootstrap, "embedded_broker": True}
        )
    assert settings.kafka_bootstrap is not None
    others = [
        settings.repartition_topic,
        settings.topic_signals,
        settings.topic_decisions,
        settings.topic_dlq,
    ]
    bootstrap, partitions = settings.kafka_bootstrap, settings.topic_partitions
    try:
        # The account table is partitioned like the input topic, so they must agree
        # before anything else is created.
        counts = asyncio.run(ensure_topics(bootstrap, [settings.topic_events], partitions))
        if counts[settings.topic_events] == partitions:
            counts = asyncio.run(ensure_topics(bootstrap, others, partitions))
    except (BrokerUnavailable, TopicCreationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    for topic in (settings.topic_events, settings.repartition_topic):
        if topic in counts and counts[topic] != partitions:
            print(
                f"error: topic {topic} has {counts[topic]} partitions but TOPIC_PARTITIONS="
                f"{partitions}; set TOPIC_PARTITIONS={counts[topic]}",
                file=sys.stderr,
            )
            return 3
    print(
        f"rules {settings.rules_file} (digest {rules.digest}); broker {settings.kafka_bootstrap}; "
        f"metrics on http://127.0.0.1:{settings.web_port}/metrics",
        file=sys.stderr,
    )
    app = create_app(settings, rules)
    try:
        faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        if broker is not None:
            broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "worker":
        return worker(rest)
    if command == "demo":
        from streams.demo import main as demo

        return demo(rest)
    if command == "simulate":
        from streams.simulate import main as simulate

        return simulate(rest)
    if command == "broker":
        from streams.embedded import main as broker

        return broker(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: python -m streams worker|demo|simulate|backtest|broker|kafka."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import sys

USAGE = """usage: python -m streams COMMAND [options]

commands:
  worker     run the detector (KAFKA_BOOTSTRAP, REDIS_URL, RULES_FILE from the environment;
             without KAFKA_BOOTSTRAP it starts an embedded broker for itself)
  demo       embedded broker + worker + a simulated customer base; prints signals
  simulate   write a simulated customer base as contract events (JSON lines, or Kafka)
  backtest   replay an events file through the detector; per-trigger coverage and
             false positives against an outcomes file, rules files side by side
  broker     run the embedded Kafka-compatible broker (Tansu) in the foreground
  kafka      run an Apache Kafka broker (KRaft, single node) in the foreground
"""


def worker(argv: list[str]) -> int:
    """Start the detector worker; a bad setting, rules file or broker ends it with one line."""
    import faust
    from pydantic import ValidationError

    from streams.app import create_app
    from streams.embedded import EmbeddedBroker
    from streams.io import kafka_security
    from streams.io.ledger import redacted
    from streams.io.metrics import describe_build
    from streams.io.topics import (
        BrokerUnavailable,
        SessionTimeoutRefused,
        TopicCreationError,
        check_session_timeout,
        ensure_topics,
        existing_partitions,
    )
    from streams.logs import fatal, logging_config
    from streams.rules import RulesError, load
    from streams.settings import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        # errors(include_input=False): the message names the setting, never its value,
        # which may be a password (KAFKA_SASL_PASSWORD, REDIS_URL).
        problem = error.errors(include_url=False, include_input=False)[0]
        name = ".".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        return fatal(f"bad setting {name}: {message}", "text", code=2)
    config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(config)
    log = logging.getLogger("streams.worker")
    sasl = (
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password,
    )
    if not settings.kafka_sasl and any(sasl):
        log.warning(
            "KAFKA_SASL_* are set but not used: KAFKA_SECURITY_PROTOCOL=%s (SASL_PLAINTEXT or "
            "SASL_SSL uses them)",
            settings.kafka_security_protocol,
        )
    try:
        rules = load(settings.rules_file)
    except RulesError as error:
        return fatal(f"bad rules file: {error}", settings.log_format, code=2)
    broker = None
    if not settings.kafka_bootstrap:
        broker = EmbeddedBroker(log_dir=settings.data_dir.parent).start()
        log.info("embedded Kafka broker (Tansu) at %s", broker.bootstrap)
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
    security = kafka_security.aiokafka_kwargs(settings)
    wait = settings.broker_wait_seconds
    try:
        # The account table is partitioned like the input topic, so they must agree
        # before anything else is created.
        counts = asyncio.run(
            ensure_topics(
                bootstrap,
                [settings.topic_events],
                partitions,
                wait_seconds=wait,
                security=security,
            )
        )
        if counts[settings.topic_events] == partitions:
            counts = asyncio.run(
                ensure_topics(bootstrap, others, partitions, wait_seconds=wait, security=security)
            )
        timeout = settings.broker_session_timeout
        asyncio.run(check_session_timeout(bootstrap, timeout, security))
    except (BrokerUnavailable, TopicCreationError, SessionTimeoutRefused) as error:
        return fatal(str(error), settings.log_format, code=3)
    for topic in (settings.topic_events, settings.repartition_topic):
        if topic in counts and counts[topic] != partitions:
            return fatal(
                f"topic {topic} has {counts[topic]} partitions but TOPIC_PARTITIONS="
                f"{partitions}; set TOPIC_PARTITIONS={counts[topic]}",
                settings.log_format,
                code=3,
            )
    log.info(
        "rules %s (digest %s); broker %s (%s); Redis %s; metrics on http://127.0.0.1:%s/metrics",
        settings.rules_file,
        rules.digest,
        settings.kafka_bootstrap,
        kafka_security.describe(settings),  # never a password
        redacted(settings.redis_url),
        settings.web_port,
    )
    describe_build(rules.digest, str(settings.rules_file))
    app = create_app(settings, rules)
    # Faust writes each account's state to the changelog partition of its input partition.
    changelog = app.pipeline.accounts.changelog_topic.get_topic_name()  # type: ignore[attr-defined]
    found = asyncio.run(existing_partitions(bootstrap, [changelog], security))
    if found.get(changelog, partitions) != partitions:
        return fatal(
            f"topic {changelog} has {found[changelog]} partitions but TOPIC_PARTITIONS="
            f"{partitions}; the account table's changelog needs as many as the input topic",
            settings.log_format,
            code=3,
        )
    try:
        faust.Worker(
            app,
            loglevel=settings.log_level,
            logging_config=config,
            quiet=True,
            # stdout carries no signals; anything printed there is a log line like the rest
            redirect_stdouts=False,
        ).execute_from_commandline()
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
    if command == "backtest":
        from streams.backtest import main as backtest

        return backtest(rest)
    if command == "broker":
        from streams.embedded import main as broker

        return broker(rest)
    if command == "kafka":
        from streams.apache_kafka import main as kafka

        return kafka(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

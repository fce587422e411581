"""Worker start-up: settings, logging, rules, the broker and its topics, then the Faust worker."""

from __future__ import annotations

import asyncio
import gc
import logging
import logging.config

import faust
from pydantic import ValidationError

from streams.app import create_app
from streams.embedded import EmbeddedBroker
from streams.io import kafka_security
from streams.io.accounts import ACCOUNTS_TABLE
from streams.io.ledger import redacted
from streams.io.metrics import describe_build
from streams.io.topics import (
    BrokerUnavailable,
    SessionTimeoutRefused,
    TopicCreationError,
    check_session_timeout,
    ensure_topics,
    existing_partitions,
    message_limits,
)
from streams.logs import fatal, logging_config
from streams.rules import RulesError, load
from streams.settings import Settings

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    """Start the detector worker; a bad setting, rules file or broker ends it with one line."""
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
    _warn_unused_sasl(settings)
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
    stop = _topics_problem(settings)
    if stop is not None:
        return fatal(stop, settings.log_format, code=3)
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
    settings = _within_broker_limit(settings)
    app = create_app(settings, rules)
    stop = _changelog_problem(settings, app)
    if stop is not None:
        return fatal(stop, settings.log_format, code=3)
    tune_garbage_collector()
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


# Objects allocated, less those freed, before the collector looks for cycles among the newest
# (CPython's default is 700). Each event allocates and drops many small objects that no
# cycle holds; at the default the collector took ~5 % of the worker's time, at this ~1 %
# (docs/performance.md). Cycles are still collected, a few times a second instead of ~90.
GC_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Leave what start-up allocated (modules, rules, the app) out of every collection, and
    collect less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, older, oldest)


def _warn_unused_sasl(settings: Settings) -> None:
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


def written_topics(settings: Settings) -> list[str]:
    """The topics the worker writes besides its table's changelog."""
    return [
        settings.repartition_topic,
        settings.topic_signals,
        settings.topic_decisions,
        settings.topic_outcomes,
        settings.topic_dlq,
    ]


def _topics_problem(settings: Settings) -> str | None:
    """Create the worker's topics that are missing; what stops the worker, if anything."""
    assert settings.kafka_bootstrap is not None
    others = written_topics(settings)
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
                ensure_topics(
                    bootstrap,
                    others,
                    partitions,
                    wait_seconds=wait,
                    security=security,
                    config={"max.message.bytes": str(settings.message_max_bytes)},
                )
            )
        timeout = settings.broker_session_timeout
        asyncio.run(check_session_timeout(bootstrap, timeout, security))
    except (BrokerUnavailable, TopicCreationError, SessionTimeoutRefused) as error:
        return str(error)
    for topic in (settings.topic_events, settings.repartition_topic):
        if topic in counts and counts[topic] != partitions:
            return (
                f"topic {topic} has {counts[topic]} partitions but TOPIC_PARTITIONS="
                f"{partitions}; set TOPIC_PARTITIONS={counts[topic]}"
            )
    return None


def _within_broker_limit(settings: Settings) -> Settings:
    """The settings with MESSAGE_MAX_BYTES lowered to the largest message the broker and the
    topics the worker writes take, when that is less; one line says so."""
    assert settings.kafka_bootstrap is not None
    written = [
        *written_topics(settings),
        f"{settings.app_id}-{ACCOUNTS_TABLE}-changelog",  # as Faust names a table's changelog
    ]
    security = kafka_security.aiokafka_kwargs(settings)
    limits = asyncio.run(message_limits(settings.kafka_bootstrap, written, security))
    smaller = {name: limit for name, limit in limits.items() if limit < settings.message_max_bytes}
    if not smaller:
        return settings
    least = min(smaller.values())
    log.warning(
        "broker %s takes messages of at most %d bytes (%s), less than MESSAGE_MAX_BYTES=%d: "
        "the worker sends at most %d, and large accounts' states are split to fit",
        settings.kafka_bootstrap,
        least,
        ", ".join(
            f"{'message.max.bytes' if name == 'broker' else name + ' max.message.bytes'} {limit}"
            for name, limit in sorted(smaller.items())
        ),
        settings.message_max_bytes,
        least,
    )
    return settings.model_copy(update={"message_max_bytes": least})


def _changelog_problem(settings: Settings, app: faust.App) -> str | None:
    """Faust writes each account's state to the changelog partition of its input partition:
    a changelog that exists with another partition count stops the worker."""
    assert settings.kafka_bootstrap is not None
    changelog = app.tables[ACCOUNTS_TABLE].changelog_topic.get_topic_name()
    security = kafka_security.aiokafka_kwargs(settings)
    found = asyncio.run(existing_partitions(settings.kafka_bootstrap, [changelog], security))
    partitions = settings.topic_partitions
    if found.get(changelog, partitions) != partitions:
        return (
            f"topic {changelog} has {found[changelog]} partitions but TOPIC_PARTITIONS="
            f"{partitions}; the account table's changelog needs as many as the input topic"
        )
    return None

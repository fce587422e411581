"""Start-up on the broker (topics created when missing, the session timeout checked), whether
the broker answers, and the partition a producer's default partitioner picks."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.partitioner import murmur2

from streams.io.backoff import FIRST_DELAY, backoff_delays

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
# The fetch wait of every consumer here (the worker's, tail's, the webhook sink's, the demo's):
# Tansu answers a fetch only when its wait runs out, and any broker holds a fetch of idle
# partitions alone for the whole wait (streams.io.transport says why that happens).
FETCH_MAX_WAIT_MS = 20
DEFAULT_WAIT_SECONDS = 300.0  # BROKER_WAIT_SECONDS
METADATA_WAIT_SECONDS = 10.0  # for a new topic's partitions to show in the metadata
# The broker answered and said no to the SASL set-up: waiting will not change that.
AUTH_ERRORS = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError)


class BrokerUnavailable(RuntimeError):
    """The broker did not answer in time, or refused the client's SASL set-up."""


class TopicCreationError(RuntimeError):
    """The broker answered but refused to create a topic (bad name, partition count, ...)."""


class SessionTimeoutRefused(RuntimeError):
    """The broker accepts no group member with the worker's session timeout."""


@lru_cache(maxsize=16_384)  # called per account per message; murmur2 is pure Python
def partition_for(key: bytes, partitions: int) -> int:
    """Return the partition Kafka's default (murmur2) partitioner sends `key` to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def ensure_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    attempts: int | None = None,
    backoff: float = FIRST_DELAY,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    security: Mapping[str, Any] | None = None,
    config: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Create the topics in `names` that do not exist yet, waiting for the broker to answer.

    While the broker does not answer, one warning says so and attempts go on with
    exponential backoff (`backoff` seconds first, doubling to 10 s, with jitter) for up to
    `wait_seconds` (0: forever) or `attempts` attempts; a line says when it answers again.
    A broker that rejects the SASL set-up ends it at once. `security` are aiokafka's
    security_protocol/ssl_context/sasl_* arguments (streams.io.kafka_security).
    Missing topics are created with the topic `config`; existing ones are left as they are.
    The partition count of each topic is returned.
    """
    started = time.monotonic()
    deadline = started + wait_seconds if wait_seconds > 0 else math.inf
    delays = backoff_delays(first=backoff)
    reported: str | None = None  # the kind of failure the last warning named
    attempt = 0

    def answered() -> None:
        nonlocal reported
        if reported is not None:
            log.warning(
                "broker %s reachable again after %.1fs", bootstrap, time.monotonic() - started
            )
            reported = None

    while True:
        attempt += 1
        kind = "connect"  # TCP, then Kafka requests
        with _ClientErrors() as client_errors:
            try:
                # A plain TCP probe first: aiokafka logs its own error line for a refused
                # connection, and one line per outage is all an operator needs.
                await _probe(bootstrap)
                kind = "kafka"
                counts = await _create_missing(
                    bootstrap, names, partitions, security or {}, config or {}, answered
                )
            except (OSError, KafkaError) as exc:  # TimeoutError is an OSError
                error: BaseException = exc
            else:
                return counts
        cause = client_errors.last
        if isinstance(cause, AUTH_ERRORS):
            raise BrokerUnavailable(
                f"broker {bootstrap} rejected the client's SASL set-up "
                f"({type(cause).__name__}); check KAFKA_SECURITY_PROTOCOL, "
                "KAFKA_SASL_MECHANISM and the credentials"
            ) from None
        if isinstance(error, KafkaConnectionError) and cause is not None:
            error = cause  # aiokafka's "Unable to bootstrap" hides why
        if kind != reported:
            if kind == "connect":
                log.warning(
                    "broker %s not reachable (%s); retrying with backoff until it answers",
                    bootstrap,
                    type(error).__name__,
                )
            else:
                log.warning(
                    "broker %s accepts connections but its Kafka requests fail (%s); retrying "
                    "with backoff until it answers (does KAFKA_SECURITY_PROTOCOL match it?)",
                    bootstrap,
                    type(error).__name__,
                )
            reported = kind
        now = time.monotonic()
        if (attempts is not None and attempt >= attempts) or now >= deadline:
            detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            tries = f"{attempt} attempt" + ("s" if attempt != 1 else "")
            raise BrokerUnavailable(
                f"broker {bootstrap} not reachable after {tries} in "
                f"{now - started:.1f}s ({detail}); is KAFKA_BOOTSTRAP right? "
                "(BROKER_WAIT_SECONDS sets how long to wait)"
            ) from None
        delay = min(next(delays), deadline - now)
        log.debug("broker %s: attempt %d failed; next in %.2fs", bootstrap, attempt, delay)
        await asyncio.sleep(delay)


async def check_session_timeout(
    bootstrap: str, seconds: float, security: Mapping[str, Any] | None = None
) -> None:
    """Raise SessionTimeoutRefused if the broker's group.min/max.session.timeout.ms leave out
    `seconds`: it refuses such a member's join, and the worker would wait for ever.

    A broker that does not tell its settings (Tansu) is not checked.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **(security or {})
    )
    names = ("group.min.session.timeout.ms", "group.max.session.timeout.ms")
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        broker_id = str(cluster["brokers"][0]["node_id"])
        wanted = ConfigResource(ConfigResourceType.BROKER, broker_id, dict.fromkeys(names))
        response = (await admin.describe_configs([wanted]))[0]
    except (KafkaError, IndexError, KeyError):
        return
    finally:
        await admin.close()
    found = {
        entry[0]: entry[1]
        for error_code, *_, entries in response.resources
        if error_code == 0
        for entry in entries
    }
    if set(found) != set(names):
        return
    least, most = (int(found[name]) / 1000 for name in names)
    if not least <= seconds <= most:
        raise SessionTimeoutRefused(
            f"broker {bootstrap} accepts session timeouts of {least:g}-{most:g}s "
            f"(group.min/max.session.timeout.ms), not BROKER_SESSION_TIMEOUT={seconds:g}"
        )


async def message_limits(
    bootstrap: str, topics: list[str], security: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """The largest message each existing topic of `topics` takes (its max.message.bytes)
    and the broker takes (its message.max.bytes, keyed "broker"), as far as it tells.

    Each topic's configuration is asked for whole (Tansu answers nothing else), and the
    broker's last: Tansu closes the connection on it.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **(security or {})
    )
    limits: dict[str, int] = {}
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics if topic in existing
        ]
        if wanted:
            limits |= _config_numbers(await admin.describe_configs(wanted), "max.message.bytes")
        cluster = await admin.describe_cluster()
        broker = str(cluster["brokers"][0]["node_id"])
        wanted = [ConfigResource(ConfigResourceType.BROKER, broker, {"message.max.bytes": None})]
        found = _config_numbers(await admin.describe_configs(wanted), "message.max.bytes")
        if broker in found:
            limits["broker"] = found[broker]
    except (KafkaError, IndexError, KeyError):
        pass
    finally:
        await admin.close()
    return limits


def _config_numbers(responses: list[Any], name: str) -> dict[str, int]:
    """Each resource's value of the configuration `name`, from DescribeConfigs responses."""
    return {
        resource: int(entry[1])
        for response in responses
        for error_code, _, _, resource, entries, *_ in response.resources
        if error_code == 0
        for entry in entries
        if entry[0] == name and entry[1]
    }


class _ClientErrors(logging.Filter):
    """While active, keep aiokafka's own "Unable connect to" lines out of the log.

    ensure_topics reports the broker's state in its own words, once; the error aiokafka
    logged is kept (`last`), since the exception it raises afterwards does not say why.
    """

    logger = logging.getLogger("aiokafka")

    def __init__(self) -> None:
        super().__init__()
        self.last: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Unable connect to"):
            if record.args and isinstance(record.args, tuple):
                found = record.args[-1]
                if isinstance(found, BaseException):
                    self.last = found
            return False
        return True

    def __enter__(self) -> _ClientErrors:
        self.logger.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeFilter(self)


async def _create_missing(
    bootstrap: str,
    names: list[str],
    partitions: int,
    security: Mapping[str, Any],
    config: Mapping[str, str],
    answered: Callable[[], None] = lambda: None,
) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **security)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        answered()
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if missing:
            await _create(admin, missing, partitions, config)
        return await _partition_counts(admin, list(dict.fromkeys(names)))
    finally:
        await admin.close()


async def existing_partitions(
    bootstrap: str, names: list[str], security: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """The partition count of each topic in `names` that exists (of the broker that answered
    ensure_topics)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **(security or {})
    )
    try:
        await admin.start()
        existing = [name for name in names if name in set(await admin.list_topics())]
        return await _partition_counts(admin, existing) if existing else {}
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Each topic's partition count, once the broker's metadata shows every one of them.

    Kafka acknowledges a topic's creation before its metadata lists the partitions.
    """
    deadline = time.monotonic() + METADATA_WAIT_SECONDS
    while True:
        described = await admin.describe_topics(names)
        counts = {
            topic["topic"]: len(topic["partitions"])
            for topic in described
            if topic["error_code"] == 0 and topic["partitions"]
        }
        if len(counts) == len(names):
            return counts
        if time.monotonic() > deadline:
            unknown = sorted(set(names) - set(counts))
            raise UnknownTopicOrPartitionError(f"no partitions listed yet for {unknown}")
        await asyncio.sleep(0.1)


async def _create(
    admin: AIOKafkaAdminClient, missing: list[str], partitions: int, config: Mapping[str, str]
) -> None:
    response = await admin.create_topics(
        [
            NewTopic(name, partitions, replication_factor=1, topic_configs=dict(config))
            for name in missing
        ]
    )
    for topic_error in response.topic_errors:
        topic, code = topic_error[0], topic_error[1]
        if code in (0, TopicAlreadyExistsError.errno):  # another process got there first
            continue
        error = for_code(code)
        if error.retriable:
            raise error(f"topic {topic!r} not created yet")
        detail = topic_error[2] if len(topic_error) > 2 and topic_error[2] else error.__name__
        raise TopicCreationError(f"cannot create topic {topic!r}: {detail}")
    log.info("created topics %s with %d partitions", ", ".join(missing), partitions)


async def _probe(bootstrap: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise OSError unless some bootstrap server accepts a TCP connection within `timeout`."""
    error: OSError = OSError(f"no bootstrap servers in {bootstrap!r}")
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host:  # aiokafka's default port applies to a bare host name
            host, port = port, "9092"
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        except OSError as exc:
            error = exc
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise error


async def reachable(bootstrap: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether some bootstrap server accepts a TCP connection within `timeout`."""
    try:
        await _probe(bootstrap, timeout)
    except (OSError, ValueError):  # ValueError: a port that is not a number
        return False
    return True

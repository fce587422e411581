"""Topic creation at start-up, and the partition a producer's default partitioner picks."""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.partitioner import murmur2

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0


class BrokerUnavailable(RuntimeError):
    """The broker did not answer on any attempt."""


class TopicCreationError(RuntimeError):
    """The broker answered but refused to create a topic (bad name, partition count, ...)."""


@lru_cache(maxsize=65_536)  # called per account per message; murmur2 is pure Python
def partition_for(key: bytes, partitions: int) -> int:
    """Return the partition Kafka's default (murmur2) partitioner sends `key` to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def ensure_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    attempts: int = 30,
    backoff: float = 2.0,
) -> dict[str, int]:
    """Create the topics in `names` that do not exist yet, waiting for the broker to answer.

    Existing topics are left as they are; the partition count of each topic is returned.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await _create_missing(bootstrap, names, partitions)
        except (OSError, KafkaError) as exc:  # TimeoutError is an OSError
            if attempt == attempts:
                raise BrokerUnavailable(
                    f"broker {bootstrap} not reachable after {attempts} attempts "
                    f"({type(exc).__name__}: {exc}); is KAFKA_BOOTSTRAP right?"
                ) from None
            log.warning(
                "broker %s not reachable; retrying in %gs (attempt %d of %d)",
                bootstrap,
                backoff,
                attempt,
                attempts,
            )
            await asyncio.sleep(backoff)
    raise BrokerUnavailable(f"broker {bootstrap} not tried: attempts={attempts}")


async def _create_missing(bootstrap: str, names: list[str], partitions: int) -> dict[str, int]:
    # A plain TCP probe first: aiokafka logs its own error line for a refused connection,
    # and one line per attempt is all an operator needs.
    await _probe(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if missing:
            await _create(admin, missing, partitions)
        described = await admin.describe_topics(list(dict.fromkeys(names)))
        return {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, missing: list[str], partitions: int) -> None:
    response = await admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in missing]
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


async def _probe(bootstrap: str) -> None:
    """Raise OSError unless some bootstrap server accepts a TCP connection."""
    error: OSError = OSError(f"no bootstrap servers in {bootstrap!r}")
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host:  # aiokafka's default port applies to a bare host name
            host, port = port, "9092"
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, int(port)), CONNECT_TIMEOUT
            )
        except OSError as exc:
            error = exc
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise error

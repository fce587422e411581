"""Acked sends: records sent to the broker until it acks each, with the one backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError

from streams.io import metrics
from streams.io.background import in_slices
from streams.io.backoff import backoff_delays

log = logging.getLogger(__name__)
# A send that fails with these is sent again; anything else is a bug and stops the worker.
SEND_ERRORS = (KafkaError, TimeoutError, ConnectionError)
# topic, key, value and partition (None: the topic's partitioner picks it)
Record = tuple[faust.TopicT, bytes | None, bytes | None, int | None]  # value None: a tombstone
Send = Callable[[Record], Awaitable[Any]]
SEND_SLICE = 64  # records sent between turns of the event loop (a commit sends thousands)


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """A topic whose keys and values are bytes, as they are read and sent."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


async def send_to_topic(record: Record) -> Any:
    """Send through Faust's producer: the future of the record's metadata."""
    topic, key, value, partition = record
    return await topic.send(key=key, value=value, partition=partition)


class Delivery:
    """Sends records and waits for the broker's acks, sending again what failed.

    One per worker: while the broker fails, one line says so, and one when it acks again.
    """

    def __init__(self) -> None:
        self.broker_failing = False

    async def deliver(self, records: Sequence[Record], send: Send = send_to_topic) -> list[Any]:
        """Send records and wait until the broker has acked each; a failed send is sent again.

        Returns each record's metadata (partition, offset) in order.

        While the broker fails, processing waits here: the input offset is not committed,
        and nothing after these records is sent.
        """
        sent = [
            (record, await _sent(send, record)) async for record in in_slices(records, SEND_SLICE)
        ]
        placed = []
        for record, delivery in sent:
            delays = None  # made at the first failure: most sends succeed at once
            while True:
                try:
                    placed.append(await delivery)
                    break
                except SEND_ERRORS as error:
                    topic = record[0].get_topic_name()
                    metrics.BROKER_ERRORS.labels(topic).inc()
                    metrics.PUBLISH_RETRIES.labels(topic).inc()
                    if not self.broker_failing:
                        self.broker_failing = True
                        log.warning(
                            "send to %s failed (%s); retrying until the broker acks it",
                            topic,
                            error.__class__.__name__,
                        )
                    if delays is None:
                        delays = backoff_delays()
                    await asyncio.sleep(next(delays))
                    delivery = await _sent(send, record)
            if self.broker_failing:
                self.broker_failing = False
                log.info("sends to the broker succeed again")
        return placed


async def _sent(send: Send, record: Record) -> Any:
    """The delivery of send(record): a future of its metadata, failed if the send was."""
    try:
        return await send(record)
    except SEND_ERRORS as error:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(error)
        return failed

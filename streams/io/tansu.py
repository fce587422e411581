"""Faust transport for the embedded Tansu broker: the aiokafka driver with a short fetch wait."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver

# Tansu answers a fetch when the fetch's wait runs out, not as soon as records arrive, and
# Faust asks for 1.5 s: every event would wait up to that long. Kafka answers early.
FETCH_MAX_WAIT_MS = 20


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer


SCHEME = "tansu"
TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"

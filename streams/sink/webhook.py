"""The webhook sink: signals of chosen routes posted once each to a URL, as JSON or for Slack."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import logging
import logging.config
import math
import os
import signal as signals
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, get_args
from urllib.parse import urlsplit

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.io import kafka_security
from streams.io.backoff import backoff_delays
from streams.io.ledger import LEDGER_TTL_SECONDS, redacted
from streams.io.topics import (
    FETCH_MAX_WAIT_MS,
    BrokerUnavailable,
    TopicCreationError,
    ensure_topics,
)
from streams.logs import fatal, logging_config
from streams.settings import Settings
from streams.signals import Route
from streams.sink import formats

log = logging.getLogger("streams.sink")
T = TypeVar("T")

ROUTES: tuple[str, ...] = get_args(Route)
BODY_EXCERPT = 512  # characters of a refusing receiver's answer kept in the DLQ record
RETRY_AFTER_MAX = 600.0  # seconds: a longer Retry-After is waited for this long, then retried
FETCH_RECORDS = 50  # signals read per fetch; their offsets are committed after they are done
# Failures of the sink's own dependencies (Redis, the DLQ topic), waited out with backoff.
RETRYABLE = (RedisConnectionError, RedisTimeoutError, KafkaError, OSError)
# Several instances of one sink share its slots: each post takes the next free one, so
# the receiver sees at most `rate` posts a second from the sink as a whole.
_NEXT_SLOT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local slot = math.max(t, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])), 'EX', 3600)
return tostring(slot - t)
"""

REGISTRY = CollectorRegistry()
POSTS = Counter(
    "expansion_sink_posts_total",
    "Posts to the receiver, by HTTP status (`error`: no answer, a timeout or a refused connection)",
    ["sink", "status"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "expansion_sink_retries_total", "Posts sent again after a failure", ["sink"], registry=REGISTRY
)
REFUSED = Counter(
    "expansion_sink_refused_total",
    "Signals the receiver refused for good (a 3xx, or a 4xx but 408 and 429), written to the DLQ",
    ["sink"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "expansion_sink_skipped_total",
    "Signals not posted: `route` (not a route of this sink), `posted` (the ledger had it)",
    ["sink", "reason"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "expansion_sink_post_seconds",
    "Time the receiver took to answer a post",
    ["sink"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
LAG = Gauge(
    "expansion_sink_lag",
    "Signals not yet read by this sink instance, per partition of the signals topic",
    ["sink", "partition"],
    registry=REGISTRY,
)


class Stopped(Exception):
    """The sink was asked to stop while it waited to post again."""


class BadSettings(ValueError):
    """A setting the sink cannot run with; its message is the one line the operator sees."""


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """One webhook sink: where it posts, what and how fast."""

    name: str
    url: str
    routes: frozenset[str]
    form: str  # json | slack
    secret: bytes | None
    link: str | None
    rate: float  # posts a second
    timeout: float  # seconds for one post
    dlq_topic: str
    group: str
    metrics_port: int
    from_beginning: bool

    @property
    def receiver(self) -> str:
        """The URL without path or query, which may hold a token (a Slack webhook's does)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a post ended: the receiver's status (None: no answer) and what it said."""

    status: int | None
    answer: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadSettings(message)


def parse(argv: list[str], environ: dict[str, str] | None = None) -> SinkConfig:
    """The sink's settings from its command line; BadSettings names what is wrong."""
    environ = dict(os.environ if environ is None else environ)
    parser = _Parser(
        prog="python -m streams sink webhook",
        description="Post published signals to a webhook (JSON) or a Slack incoming webhook.",
    )
    parser.add_argument("kind", choices=["webhook"], help="the kind of sink")
    parser.add_argument("--url", default=environ.get("SINK_URL"), help="receiver (or SINK_URL)")
    parser.add_argument("--routes", default=",".join(ROUTES), help="routes to post, by comma")
    parser.add_argument("--format", dest="form", choices=["json", "slack"], default="json")
    parser.add_argument("--secret-env", help="environment variable holding the signing secret")
    parser.add_argument("--link", help="account link for Slack, e.g. https://crm/a/{account_id}")
    parser.add_argument("--name", help="sink name: ledger, group and DLQ (default: the format)")
    parser.add_argument("--rate", type=float, help="posts a second (default: slack 1, json 20)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for one post")
    parser.add_argument("--dlq-topic", help="refused signals (default: expansion-sink-NAME-dlq)")
    parser.add_argument("--metrics-port", type=int, default=6067, help="port for /metrics")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="a new sink starts at the oldest signal kept (default: the next one published)",
    )
    args = parser.parse_args(argv)
    if not args.url:
        raise BadSettings("no receiver URL: give --url or set SINK_URL")
    if urlsplit(args.url).scheme not in ("http", "https") or not urlsplit(args.url).hostname:
        raise BadSettings("the receiver URL must be an http:// or https:// URL")
    routes = frozenset(route.strip() for route in args.routes.split(",") if route.strip())
    unknown = sorted(routes - set(ROUTES))
    if not routes:
        raise BadSettings("no route in --routes; the routes are " + ", ".join(ROUTES))
    if unknown:
        raise BadSettings(
            f"bad route name {', '.join(map(repr, unknown))} in --routes; the routes are "
            + ", ".join(ROUTES)
        )
    secret = None
    if args.secret_env:
        value = environ.get(args.secret_env, "")
        if not value:
            raise BadSettings(f"--secret-env {args.secret_env}: that variable is not set")
        secret = value.encode()
    if args.link:
        try:
            formats.link(args.link, dict.fromkeys(formats.LINK_FIELDS, "x"))
        except (KeyError, IndexError, ValueError):
            raise BadSettings(
                "--link may name only " + ", ".join(f"{{{f}}}" for f in formats.LINK_FIELDS)
            ) from None
    rate = args.rate if args.rate is not None else 1.0 if args.form == "slack" else 20.0
    if not (rate > 0 and args.timeout > 0):  # NaN too
        raise BadSettings("--rate and --timeout must be more than 0")
    name = args.name or args.form
    return SinkConfig(
        name=name,
        url=args.url,
        routes=routes,
        form=args.form,
        secret=secret,
        link=args.link,
        rate=rate,
        timeout=args.timeout,
        dlq_topic=args.dlq_topic or f"expansion-sink-{name}-dlq",
        group=f"expansion-sink-{name}",
        metrics_port=args.metrics_port,
        from_beginning=args.from_beginning,
    )


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), at most
    RETRY_AFTER_MAX; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def retryable(status: int | None) -> bool:
    """No answer, a timeout (408), too many requests (429) or a server error: try again."""
    return status is None or status in (408, 429) or status >= 500


class Sink:
    """Reads signals, posts each of its routes once, records it, then commits the offsets.

    The ledger is a Redis key per (sink, signal_id), `<prefix>sink:<name>:<signal_id>`, set
    right after the receiver's 2xx (or the DLQ write) and before the offset commit: a signal
    read again after a crash or a rebalance is skipped. A crash between the 2xx and the mark
    posts it again, with the same Idempotency-Key header.
    """

    def __init__(self, config: SinkConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.redis = aioredis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=3
        )
        self.next_slot = self.redis.register_script(_NEXT_SLOT)
        self.prefix = f"{settings.redis_prefix}sink:{config.name}:"
        security = kafka_security.aiokafka_kwargs(settings)
        self.consumer = AIOKafkaConsumer(
            settings.topic_signals,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=config.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if config.from_beginning else "latest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            # a receiver that is down holds a fetch for as long as it takes to come back
            max_poll_interval_ms=3_600_000,
            rebalance_timeout_ms=int(settings.broker_rebalance_timeout * 1000),
            session_timeout_ms=int(settings.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.broker_session_timeout / 3) * 1000),
            **security,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", **security
        )
        self.session: aiohttp.ClientSession | None = None
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Handle signals until `stop()`; a post being retried then is left for the next
        sink (its offset is not committed)."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self.session = session
            await self.producer.start()
            await self.consumer.start()
            try:
                while not self.stopping.is_set():
                    batches = await self.consumer.getmany(
                        timeout_ms=1000, max_records=FETCH_RECORDS
                    )
                    for tp, records in batches.items():
                        await self.handle_partition(tp, records)
                    await self.record_lag()
            except Stopped:
                log.info("sink %s stopped while a post was being retried", self.config.name)
            finally:
                await self.consumer.stop()
                await self.producer.stop()
                await self.redis.aclose()

    def stop(self) -> None:
        self.stopping.set()

    async def handle_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Handle a fetch of one partition in order, then commit its offsets."""
        for record in records:
            if tp not in self.consumer.assignment():
                return  # revoked meanwhile: its new owner reads the rest
            await self.handle(record)
        await self.commit(tp, records[-1].offset + 1)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Post one published signal if it is for this sink and not posted before."""
        name = self.config.name
        raw = record.value or b""
        try:
            signal: dict[str, Any] = orjson.loads(raw)
            signal_id, route = str(signal["signal_id"]), signal["route"]
            body = formats.body(self.config.form, raw, signal, self.config.link)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as error:
            log.warning(
                "not a signal at partition=%s offset=%s (%s); written to %s",
                record.partition,
                record.offset,
                type(error).__name__,
                self.config.dlq_topic,
            )
            await self.refuse(record, None, Delivery(None), "not_a_signal")
            return
        if route not in self.config.routes:
            SKIPPED.labels(name, "route").inc()
            return
        mark = self.prefix + signal_id
        if await self._redis(lambda: self.redis.exists(mark)):
            SKIPPED.labels(name, "posted").inc()
            return
        delivery = await self.post(body, signal_id)
        if not delivery.delivered:
            REFUSED.labels(name).inc()
            log.warning(
                "receiver %s refused signal_id=%s with status %s; written to %s",
                self.config.receiver,
                signal_id,
                delivery.status,
                self.config.dlq_topic,
            )
            await self.refuse(record, signal, delivery, "refused")
        outcome = "posted" if delivery.delivered else "refused"
        await self._redis(lambda: self.redis.set(mark, outcome, ex=LEDGER_TTL_SECONDS))

    async def post(self, body: bytes, signal_id: str) -> Delivery:
        """Post until the receiver answers 2xx or refuses for good."""
        assert self.session is not None
        headers = {"Content-Type": "application/json", formats.IDEMPOTENCY_HEADER: signal_id}
        if self.config.secret is not None:
            headers[formats.SIGNATURE_HEADER] = formats.signature(self.config.secret, body)
        delays = backoff_delays(first=0.5, cap=60.0, jitter=0.25)
        attempt = 0
        while True:
            attempt += 1
            await self.take_slot()
            started = time.monotonic()
            wait: float | None = None
            try:
                async with self.session.post(
                    self.config.url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    text = (await answer.content.read(BODY_EXCERPT * 4)).decode(errors="replace")
                    delivery = Delivery(answer.status, text[:BODY_EXCERPT])
                    wait = retry_after(answer.headers.get("Retry-After"))
                problem = f"status {answer.status}"
            except (aiohttp.ClientError, TimeoutError) as error:
                delivery, problem = Delivery(None), type(error).__name__
            LATENCY.labels(self.config.name).observe(time.monotonic() - started)
            POSTS.labels(self.config.name, str(delivery.status or "error")).inc()
            if not retryable(delivery.status):
                return delivery
            delay = next(delays) if wait is None else wait
            RETRIES.labels(self.config.name).inc()
            log.warning(
                "post of signal_id=%s to %s failed (%s, attempt %d); again in %.1fs",
                signal_id,
                self.config.receiver,
                problem,
                attempt,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
                raise Stopped

    async def take_slot(self) -> None:
        """Wait for this sink's next free posting slot (shared by all its instances)."""
        key = f"{self.prefix}next_slot"
        wait = await self._redis(lambda: self.next_slot(keys=[key], args=[1 / self.config.rate]))
        await asyncio.sleep(float(wait))

    async def refuse(
        self,
        record: ConsumerRecord[bytes, bytes],
        signal: dict[str, Any] | None,
        delivery: Delivery,
        reason: str,
    ) -> None:
        """Write a signal the receiver will not take to the sink's DLQ topic, with why."""
        value = orjson.dumps(
            {
                "sink": self.config.name,
                "reason": reason,
                "status": delivery.status,
                "answer": delivery.answer,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "signal": signal,
                "raw": None
                if signal is not None
                else (record.value or b"").decode(errors="replace"),
            }
        )
        await self._retrying(
            lambda: self.producer.send_and_wait(self.config.dlq_topic, value, key=record.key),
            "DLQ topic",
        )

    async def commit(self, tp: TopicPartition, offset: int) -> None:
        """Commit what was handled; after a rebalance the next owner reads it again and
        the ledger skips what was posted."""
        try:
            await self.consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as error:
            log.warning("offset commit of partition %s skipped (%s)", tp.partition, error)

    async def record_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                position = await self.consumer.position(tp)
                LAG.labels(self.config.name, str(tp.partition)).set(max(0, highwater - position))

    async def _redis(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await self._retrying(operation, "Redis")

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        delays = backoff_delays(first=0.25, cap=5.0)
        while True:
            try:
                return await operation()
            except RETRYABLE as error:
                delay = next(delays)
                log.warning(
                    "%s unavailable (%s); again in %.1fs", what, type(error).__name__, delay
                )
                await asyncio.sleep(delay)


async def serve_metrics(port: int) -> web.AppRunner:
    """/metrics on its own port, for Prometheus."""

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


async def _run(config: SinkConfig, settings: Settings) -> None:
    assert settings.kafka_bootstrap is not None
    await ensure_topics(
        settings.kafka_bootstrap,
        [settings.topic_signals, config.dlq_topic],
        settings.topic_partitions,
        wait_seconds=settings.broker_wait_seconds,
        security=kafka_security.aiokafka_kwargs(settings),
    )
    sink = Sink(config, settings)
    loop = asyncio.get_running_loop()
    for signum in (signals.SIGTERM, signals.SIGINT):
        loop.add_signal_handler(signum, sink.stop)
    runner = await serve_metrics(config.metrics_port)
    log.info(
        "sink %s: posting %s signals of routes %s from %s to %s at most %g a second; "
        "Redis %s; metrics on http://127.0.0.1:%s/metrics",
        config.name,
        config.form,
        ",".join(sorted(config.routes)),
        settings.topic_signals,
        config.receiver,
        config.rate,
        redacted(settings.redis_url),
        config.metrics_port,
    )
    try:
        await sink.run()
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    """Run the sink until SIGTERM; bad settings end it with one line."""
    if argv and argv[0] in ("-h", "--help"):
        argv = ["webhook", "--help"]
    try:
        config = parse(argv)
        settings = Settings()
    except BadSettings as error:
        return fatal(str(error), "text", code=2)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        name = ".".join(str(part) for part in problem["loc"]).upper()
        return fatal(f"bad setting {name}: {problem['msg']}", "text", code=2)
    if not settings.kafka_bootstrap:
        return fatal("KAFKA_BOOTSTRAP is not set: the sink reads a running broker", "text", 2)
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    try:
        asyncio.run(_run(config, settings))
    except (BrokerUnavailable, TopicCreationError) as error:
        return fatal(str(error), settings.log_format, code=3)
    return 0

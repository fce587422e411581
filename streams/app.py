"""Builds the Faust app from settings and rules and wires the agent and web views; no decisions."""

from __future__ import annotations

import asyncio
from typing import cast

import faust
from aiokafka.errors import IllegalStateError
from faust.web import Request, Response, View

from streams import scorecard
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.io import kafka_security, metrics, transport
from streams.io.accounts import AccountStore
from streams.io.agents import Agent, register
from streams.io.delivery import Delivery, raw_topic
from streams.io.ledger import Ledger
from streams.io.publisher import KafkaPublisher
from streams.io.scorecard import ScorecardView
from streams.io.sla import CHECK_SECONDS, ResponseSla
from streams.io.topics import reachable
from streams.rules import Rules
from streams.settings import Settings

# A request for the scorecard waits this long for Redis (which the worker itself waits for).
SCORECARD_READ_SECONDS = 5.0


NEVER = 2**62  # messages: more than any worker will read


def new_faust_app(settings: Settings) -> faust.App:
    """A Faust app configured from settings as the worker runs it, with no agents yet."""
    if not settings.kafka_bootstrap:
        raise ValueError("a Faust app needs settings.kafka_bootstrap")
    scheme = transport.TANSU_SCHEME if settings.embedded_broker else transport.KAFKA_SCHEME
    # Faust creates the data directory itself, but not its parents (.run in a fresh clone).
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=f"{scheme}://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        processing_guarantee="at_least_once",
        # Offsets are committed on Faust's timer (broker_commit_interval) only: a commit
        # after every 10,000 messages (Faust's default) ran inside its message loop, and no
        # message reached the agent until the commit's saves were done (docs/performance.md).
        broker_commit_every=NEVER,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
        web_port=settings.web_port,
        producer_max_request_size=settings.message_max_bytes,
        # SASL/TLS from KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*; None: PLAINTEXT
        broker_credentials=kafka_security.faust_credentials(settings),
    )


def create_app(settings: Settings, rules: Rules) -> faust.App:
    """A Faust app running the detector with `rules` against the settings' broker and Redis."""
    app = new_faust_app(settings)
    ledger = Ledger(settings.redis_url, settings.redis_prefix)
    delivery = Delivery()
    readiness = ScorecardView(ledger)

    async def write_scorecard(states: list[AccountState]) -> None:
        await readiness.write(states, rules)

    accounts = AccountStore(app, settings, delivery, after_save=write_scorecard)
    sla = ResponseSla(rules, ledger)
    publisher = KafkaPublisher(
        raw_topic(app, settings.topic_signals),
        raw_topic(app, settings.topic_decisions),
        raw_topic(app, settings.topic_outcomes),
        ledger,
        delivery,
        sla,
    )
    agent = Agent(app, settings, Detector(rules), accounts, publisher, ledger, delivery, sla)
    register(app, agent, accounts)
    input_topics = {settings.topic_events, settings.repartition_topic}

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body, content_type = metrics.exposition(request.url.query.getall("name[]", []))
            return self.bytes(body, content_type=content_type.split(";")[0])

    @app.page("/scorecard")
    class Scorecard(View):
        async def get(self, request: Request) -> Response:
            token = settings.scorecard_token
            if token is None:
                return self.error(404, "the scorecard is off: set SCORECARD_TOKEN to serve it")
            if not scorecard.authorized(
                request.headers.get("Authorization"), token.get_secret_value()
            ):
                challenge = 'Bearer realm="scorecard", Basic realm="scorecard"'
                return self.error(
                    401, "a bearer token is needed", headers={"WWW-Authenticate": challenge}
                )
            try:
                query = scorecard.parse_query(request.query)
            except scorecard.BadQuery as error:
                return self.error(400, str(error))
            try:
                rows = await asyncio.wait_for(
                    readiness.read(query.top, query.segment), SCORECARD_READ_SECONDS
                )
            except TimeoutError:
                return self.error(503, "Redis does not answer")
            headers = {
                "Content-Type": f"{scorecard.CONTENT_TYPES[query.format]}; charset=utf-8",
                "Content-Security-Policy": scorecard.PAGE_POLICY,
                "Cache-Control": "no-store",
            }
            return self.bytes(scorecard.render(rows, query), headers=headers)

    @app.page("/healthz")
    class Healthz(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "up"})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            assigned = sorted(
                f"{tp.topic}:{tp.partition}"
                for tp in app.consumer.assignment()
                if tp.topic in input_topics
            )
            redis_ok = await ledger.ping()
            broker_ok = await reachable(settings.kafka_bootstrap or "", timeout=1.0)
            ready = bool(assigned) and not app.rebalancing and redis_ok and broker_ok
            body = {
                "ready": ready,
                "partitions": assigned,
                "broker": broker_ok,
                "redis": redis_ok,
            }
            return self.json(body, status=200 if ready else 503)

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        # partitions this worker no longer holds are someone else's to report
        for gauge in (metrics.LAG, metrics.UNCOMMITTED, metrics.COMMITTED):
            gauge.clear()
        consumer = cast(transport.Consumer, app.consumer)
        for tp in consumer.assignment():
            if tp.topic in input_topics:
                labels = (tp.topic, str(tp.partition))
                try:
                    position = await consumer.position(tp)
                except IllegalStateError:
                    continue  # revoked meanwhile by a rebalance: its next owner reports it
                highwater = consumer.highwater(tp)  # None until the first fetch
                committed = consumer.committed_offset(tp)  # None until the first commit
                if position is not None and highwater is not None:
                    metrics.LAG.labels(*labels).set(max(0, highwater - position))
                if committed is not None and highwater is not None:
                    metrics.COMMITTED.labels(*labels).set(committed)
                    metrics.UNCOMMITTED.labels(*labels).set(max(0, highwater - committed))

    @app.timer(interval=CHECK_SECONDS)
    async def check_response_sla() -> None:
        await sla.check()

    triggers = sorted({t for segment in rules.by_segment.values() for t in segment.enabled})

    @app.timer(interval=15.0)
    async def report_state() -> None:
        metrics.record_state(await accounts.summaries(), triggers)
        await ledger.ping()

    return app

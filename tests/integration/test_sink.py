"""The webhook sink against a real HTTP receiver: bodies, signature, retries, DLQ, once each."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiohttp import web
from builders import healthy_account, seats
from harness import KafkaIO, committed
from published import signal

from streams import present
from streams.client import EventProducer, Report
from streams.embedded import free_port
from streams.settings import ROOT

SECRET = "hook-secret-do-not-log"
# status, headers, body; the receiver answers posts in turn, then 200s
Answer = tuple[int, dict[str, str], str]


@dataclass
class Post:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: bytes

    @property
    def signal_id(self) -> str:
        return self.headers["Idempotency-Key"]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records each post and answers as scripted."""

    answers: list[Answer] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    # post number (1-based) -> a gate the answer to that post waits on
    holds: dict[int, threading.Event] = field(default_factory=dict)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(Post(time.monotonic(), dict(request.headers), await request.read()))
        number = len(self.posts)
        if number in self.holds:
            await asyncio.get_running_loop().run_in_executor(None, self.holds[number].wait)
        status, headers, text = self.answers.pop(0) if self.answers else (200, {}, "ok")
        return web.Response(status=status, headers=headers, text=text)

    def wait_for(self, count: int, timeout: float = 60.0, log: Path | None = None) -> list[Post]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count:
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                pytest.fail(f"{len(self.posts)} of {count} posts arrived\n{tail}", pytrace=False)
            time.sleep(0.05)
        return self.posts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(port=free_port())
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", found.port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield found
    for gate in found.holds.values():
        gate.set()
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@dataclass
class SinkProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@dataclass
class Setup:
    """One test's signals topic, Redis prefix and sink name, and a way to start sinks on them."""

    kafka: KafkaIO
    env: dict[str, str]
    name: str
    receiver: Receiver
    tmp: Path
    started: list[SinkProcess] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return self.env["TOPIC_SIGNALS"]

    @property
    def dlq(self) -> str:
        return f"expansion-sink-{self.name}-dlq"

    def publish(self, *signals: dict[str, Any]) -> None:
        for one in signals:
            self.kafka.produce(
                self.topic, orjson.dumps(one), key=one["account_id"].encode(), flush=False
            )
        self.kafka.flush()

    def start(self, *args: str) -> SinkProcess:
        port = free_port()
        log = self.tmp / f"sink-{len(self.started)}.log"
        command = [sys.executable, "-m", "streams", "sink", "webhook", "--url", self.receiver.url]
        command += ["--name", self.name, "--metrics-port", str(port), "--from-beginning", *args]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(SinkProcess(process, log, port))
        return self.started[-1]


@pytest.fixture
def setup(
    kafka_bootstrap: str,
    kafka_io: KafkaIO,
    redis_url: str,
    unique_name: Callable[[str], str],
    receiver: Receiver,
    tmp_path: Path,
) -> Iterator[Setup]:
    name = unique_name("sink")
    env = {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"{name}:",
        "TOPIC_SIGNALS": f"{name}-signals",
        "TOPIC_PARTITIONS": "1",
        "SINK_SECRET": SECRET,
    }
    kafka_io.create_topics([env["TOPIC_SIGNALS"], f"expansion-sink-{name}-dlq"], partitions=1)
    found = Setup(kafka_io, env, name, receiver, tmp_path)
    yield found
    for sink in found.started:
        if sink.process.poll() is None:
            sink.process.terminate()
            try:
                sink.process.wait(20)
            except subprocess.TimeoutExpired:
                sink.kill()


def test_json_posts_each_signal_of_its_routes_as_published_signed(setup):
    signals = [
        signal("acct-1", "in_app"),
        signal("acct-2", "csm"),
        signal("acct-3", "sales"),
        signal("acct-4", "in_app"),
        signal("acct-5", "csm"),
    ]
    setup.publish(*signals)
    sink = setup.start("--routes", "csm,sales", "--secret-env", "SINK_SECRET", "--rate", "50")
    posts = setup.receiver.wait_for(3, log=sink.log)
    wanted = [s for s in signals if s["route"] != "in_app"]
    assert [post.body for post in posts] == [orjson.dumps(s) for s in wanted]
    for post in posts:
        expected = hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.headers["X-Expansion-Signature"] == f"sha256={expected}"
        assert post.headers["Content-Type"] == "application/json"
    assert [post.signal_id for post in posts] == [s["signal_id"] for s in wanted]
    # the last in_app signal came before the last csm one: read, and left out
    text = sink.metrics()
    assert f'expansion_sink_posts_total{{sink="{setup.name}",status="200"}} 3.0' in text
    assert f'expansion_sink_skipped_total{{reason="route",sink="{setup.name}"}} 2.0' in text
    lag = f'expansion_sink_lag{{partition="0",sink="{setup.name}"}} 0.0'
    deadline = time.monotonic() + 10
    while lag not in sink.metrics():  # set once the fetch's signals are all done
        assert time.monotonic() < deadline, sink.metrics()
        time.sleep(0.2)
    assert len(setup.receiver.posts) == 3


def test_slack_posts_a_message_in_the_demos_words_with_a_link(setup):
    published = signal("acct-9", "sales", co_signals=["company_growth"])
    setup.publish(published)
    sink = setup.start(
        "--format", "slack", "--link", "https://crm.example.com/accounts/{account_id}"
    )
    (post,) = setup.receiver.wait_for(1, log=sink.log)
    message = orjson.loads(post.body)
    # Slack reads &, < and > as markup: escaped, they show as written
    assert message["text"] == present.line(published).replace(">", "&gt;")
    assert message["blocks"][0]["text"]["text"] == (
        "*<https://crm.example.com/accounts/acct-9|acct-9>* (mid_market): *invite_surge* "
        "level 1 → *sales*, score 73, +$600/mo\n6 invites sent in 30 days"
    )
    assert message["blocks"][1]["elements"][0]["text"] == "co-signals: company_growth"
    assert "X-Expansion-Signature" not in post.headers  # no --secret-env


def test_500_and_429_are_tried_again_honouring_retry_after(setup):
    setup.receiver.answers = [
        (500, {}, "busy"),
        (429, {"Retry-After": "2"}, "slow down"),
    ]
    published = signal("acct-secretive", "csm")
    setup.publish(published)
    sink = setup.start("--secret-env", "SINK_SECRET", "--rate", "50")
    posts = setup.receiver.wait_for(3, log=sink.log)
    assert {post.body for post in posts} == {orjson.dumps(published)}
    # the third post is sent no sooner than 2 s after the 429 was answered
    assert posts[2].at - posts[1].at >= 2.0
    text = sink.metrics()
    assert f'expansion_sink_retries_total{{sink="{setup.name}"}} 2.0' in text
    for status, count in (("500", 1), ("429", 1), ("200", 1)):
        assert f'posts_total{{sink="{setup.name}",status="{status}"}} {count}.0' in text
    log = sink.log.read_text()
    assert log.count("failed (status") == 2  # one line per failure
    assert SECRET not in log and "acct-secretive" not in log and "/hook" not in log


def test_a_refusal_goes_to_the_dlq_with_status_and_answer_and_the_rest_go_on(setup):
    setup.receiver.answers = [(400, {}, "invalid_blocks: " + "x" * 1000)]
    refused, accepted = signal("acct-1", "csm"), signal("acct-2", "csm")
    setup.publish(refused, accepted)
    sink = setup.start("--rate", "50")
    posts = setup.receiver.wait_for(2, log=sink.log)
    assert [post.signal_id for post in posts] == [refused["signal_id"], accepted["signal_id"]]
    (record,) = setup.kafka.consume(setup.dlq, until=lambda found: len(found) >= 1)
    value = orjson.loads(record["value"])
    assert record["key"] == b"acct-1"
    assert (value["reason"], value["status"], value["signal"]) == ("refused", 400, refused)
    assert value["answer"] == ("invalid_blocks: " + "x" * 1000)[:512]
    assert (value["sink"], value["topic"], value["offset"]) == (setup.name, setup.topic, 0)
    assert f'expansion_sink_refused_total{{sink="{setup.name}"}} 1.0' in sink.metrics()


def test_the_rate_limit_spaces_the_posts(setup):
    rate = 4.0
    setup.publish(signal("acct-warm", "csm"))
    sink = setup.start("--rate", str(rate))
    setup.receiver.wait_for(1, log=sink.log)  # started, assigned and posting
    produced_at = time.monotonic()
    setup.publish(*(signal(f"acct-{n}", "csm") for n in range(12)))
    posts = setup.receiver.wait_for(13, log=sink.log)[1:]
    # Each post takes the sink's next slot, 1/rate after the one before, so the k-th post
    # (from 0) of signals produced at `produced_at` is sent at least k/rate after it.
    for k, post in enumerate(posts):
        assert post.at - produced_at >= k / rate, f"post {k} came too early"


def test_a_signal_answered_2xx_is_not_posted_again_after_a_kill_before_the_commit(setup):
    signals = [signal(f"acct-{n}", "csm") for n in range(5)]
    setup.publish(*signals)
    gate = threading.Event()
    setup.receiver.holds[3] = gate  # the third post waits for its answer
    sink = setup.start("--rate", "50")
    setup.receiver.wait_for(3, log=sink.log)
    client = redis.Redis.from_url(setup.env["REDIS_URL"])
    marked = [f"{setup.name}:sink:{setup.name}:{s['signal_id']}" for s in signals[:3]]
    deadline = time.monotonic() + 10
    while client.exists(*marked[:2]) < 2:
        assert time.monotonic() < deadline, "the first two posts were not marked"
        time.sleep(0.05)
    assert not client.exists(marked[2])
    # posted and marked, not committed: the five came in one fetch, committed after all
    assert committed(setup.kafka.bootstrap, f"expansion-sink-{setup.name}", setup.topic, 1)[0] < 2
    sink.kill()
    gate.set()
    again = setup.start("--rate", "50")
    posts = setup.receiver.wait_for(6, log=again.log)
    ids = [post.signal_id for post in posts]
    # the third was never answered 2xx, so it is sent again, with the same Idempotency-Key
    assert ids == [s["signal_id"] for s in signals[:3]] + [s["signal_id"] for s in signals[2:]]
    time.sleep(1)
    assert len(setup.receiver.posts) == 6
    client.close()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([], "error: no receiver URL: give --url or set SINK_URL"),
        (
            ["--url", "http://127.0.0.1:9/hook", "--routes", "csm,vip"],
            "error: bad route name 'vip' in --routes; the routes are in_app, csm, sales",
        ),
    ],
)
def test_bad_settings_stop_the_sink_with_one_line(args, line):
    env = {k: v for k, v in os.environ.items() if k != "SINK_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "sink", "webhook", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.decode().splitlines(), done.stdout) == (2, [line], b"")


def test_sigterm_stops_a_sink_that_is_retrying(setup):
    setup.receiver.answers = [(503, {}, "down")] * 100
    setup.publish(signal("acct-1", "csm"))
    sink = setup.start("--rate", "50")
    setup.receiver.wait_for(2, log=sink.log)
    sink.process.terminate()
    assert sink.process.wait(20) == 0
    assert "stopped while a post was being retried" in sink.log.read_text()


def test_from_the_client_through_the_worker_to_the_receiver(setup, worker_factory):
    worker = worker_factory()
    account = "acct-e2e"

    async def produce() -> Report:
        async with EventProducer(setup.kafka.bootstrap, worker.env["TOPIC_EVENTS"]) as producer:
            return await producer.send([healthy_account(account), *seats(account, 10)])

    assert asyncio.run(produce()).rejections == []
    setup.env["TOPIC_SIGNALS"] = worker.env["TOPIC_SIGNALS"]
    sink = setup.start("--format", "json")
    (post,) = setup.receiver.wait_for(1, log=sink.log)
    (published,) = setup.kafka.consume(setup.topic, until=lambda found: len(found) >= 1)
    assert post.body == published["value"]
    assert orjson.loads(post.body)["trigger"] == "seat_saturation"

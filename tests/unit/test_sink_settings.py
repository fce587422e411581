"""The webhook sink's settings, bodies and answers, without a broker."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import time

import orjson
import pytest
import yaml
from published import signal, with_account

from streams import present
from streams.io.topics import FETCH_MAX_WAIT_MS
from streams.settings import ROOT, Settings
from streams.sink import formats
from streams.sink.webhook import BadSettings, Sink, parse, retry_after, retryable

URL = "https://hooks.example.com/services/T0/B0/secret-token"


def test_defaults_post_json_of_every_route():
    config = parse(["webhook", "--url", URL], environ={})
    assert (config.form, sorted(config.routes), config.rate) == (
        "json",
        ["csm", "in_app", "sales"],
        20.0,
    )
    assert (config.name, config.group, config.dlq_topic) == (
        "json",
        "expansion-sink-json",
        "expansion-sink-json-dlq",
    )
    assert config.receiver == "https://hooks.example.com"  # the token stays out of logs


def test_slack_posts_one_a_second_and_the_url_may_come_from_the_environment():
    config = parse(["webhook", "--format", "slack", "--routes", "csm,sales"], {"SINK_URL": URL})
    assert (config.url, config.rate, config.routes) == (URL, 1.0, {"csm", "sales"})


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["webhook"], {}, "no receiver URL: give --url or set SINK_URL"),
        (
            ["webhook", "--url", "ftp://x"],
            {},
            "the receiver URL must be an http:// or https:// URL",
        ),
        (
            ["webhook", "--url", URL, "--routes", "csm,vip"],
            {},
            "bad route name 'vip' in --routes; the routes are in_app, csm, sales",
        ),
        (
            ["webhook", "--url", URL, "--secret-env", "HOOK_SECRET"],
            {},
            "--secret-env HOOK_SECRET: that variable is not set",
        ),
        (
            ["webhook", "--url", URL, "--link", "https://crm/{acct}"],
            {},
            "--link may name only {account_id}, {signal_id}, {trigger}, {route}, {segment}",
        ),
        (["webhook", "--url", URL, "--rate", "0"], {}, "--rate and --timeout must be more than 0"),
        (
            ["webhook", "--url", URL, "--routes", ","],
            {},
            "no route in --routes; the routes are in_app, csm, sales",
        ),
        (["slack"], {}, "argument kind: invalid choice: 'slack' (choose from 'webhook')"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(argv, environ, message):
    with pytest.raises(BadSettings) as raised:
        parse(argv, environ)
    assert str(raised.value) == message


def test_the_signature_is_hmac_sha256_of_the_body_with_the_secret():
    config = parse(["webhook", "--url", URL, "--secret-env", "S"], {"S": "s3cret"})
    assert config.secret == b"s3cret"
    body = b'{"signal_id": "x"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert formats.signature(b"s3cret", body) == f"sha256={expected}"


def test_json_posts_the_signal_as_published():
    raw = orjson.dumps(signal())
    assert formats.body("json", raw, orjson.loads(raw), None) is raw


def test_the_slack_message_says_who_what_where_and_why_in_the_demos_words():
    published = signal(account="acct-<1>", co_signals=["company_growth", "new_department"])
    message = formats.slack_message(published, "https://crm.example.com/accounts/{account_id}")
    assert message["text"] == present.line(published).replace("<", "&lt;").replace(">", "&gt;")
    assert message["blocks"][0]["text"]["text"] == (
        "*<https://crm.example.com/accounts/acct-%3C1%3E|acct-&lt;1&gt;>* (mid_market): "
        "*invite_surge* level 1 → *csm*, score 73, +$600/mo\n6 invites sent in 30 days"
    )
    assert message["blocks"][1]["elements"] == [
        {"type": "mrkdwn", "text": "co-signals: company_growth, new_department"}
    ]


def test_the_slack_message_shows_the_account_of_a_v2_signal():
    message = formats.slack_message(with_account(signal(co_signals=[])), None)
    assert message["blocks"][0]["text"]["text"].startswith("*acct-1* (mid_market)")
    assert message["blocks"][1]["elements"] == [
        {
            "type": "mrkdwn",
            "text": "account: plan team, 17 seats in use of 20, 15 active users in 30 days, "
            "2 departments, MRR $3,000, health 88, NPS 8, activated 2025-06-01",
        }
    ]


def test_retry_after_reads_seconds_and_dates():
    assert retry_after("3") == 3.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("100000") == 600.0 and retry_after("-5") == 0.0
    assert retry_after("nan") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after(later) or 0) <= 31


@pytest.mark.parametrize(
    ("status", "again"),
    [(None, True), (500, True), (503, True), (429, True), (408, True), (400, False), (404, False)],
)
def test_what_is_tried_again(status, again):
    assert retryable(status) is again


def test_the_compose_sink_service_runs_once_given_a_url():
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["sink"]
    assert service["command"][:5] == ["python", "-m", "streams", "sink", "webhook"]
    config = parse(service["command"][4:], {**service["environment"], "SINK_URL": URL})
    assert (config.form, config.routes, config.rate) == ("slack", {"csm", "sales"}, 1.0)
    with pytest.raises(BadSettings, match="no receiver URL"):
        parse(service["command"][4:], service["environment"])


def test_the_sink_reads_signals_with_the_workers_short_fetch_wait():
    """On Tansu a fetch is answered only when its wait runs out: with aiokafka's 500 ms a
    signal reached the sink (and tail) 85 ms later at the median, 255 ms at worst."""

    async def fetch_wait() -> int:
        config = parse(["webhook", "--url", URL], environ={})
        sink = Sink(config, Settings(kafka_bootstrap="127.0.0.1:9"))
        return int(sink.consumer._fetch_max_wait_ms)

    assert asyncio.run(fetch_wait()) == FETCH_MAX_WAIT_MS == 20

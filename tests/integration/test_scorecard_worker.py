"""The readiness scorecard after events through the real worker: over HTTP (JSON, CSV, and the
page read back from headless Chromium's DOM) and from the command, behind the token."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
from builders import event, healthy_account, seats

from streams.domain.decide import Detector
from streams.domain.scorecard import ranked, scorecard_row
from streams.domain.state import AccountState
from streams.events import decode
from streams.rules import load
from streams.settings import ROOT

TOKEN = "scorecard-test-token"


def scenario() -> list[dict[str, Any]]:
    """`ready`: ten of ten seats (seat_saturation to a CSM); `gated`: the same with a low NPS;
    `plain`: a healthy smb account where nothing fired."""
    low_nps = event("account_updated", "gated", "2026-03-01T01:00:00Z", properties={"nps": 3})
    plain = event(
        "account_updated",
        "plain",
        "2026-03-01T00:00:00Z",
        properties={"segment": "smb", "activated_at": "2025-01-01T00:00:00Z", "health_score": 95},
    )
    return [
        healthy_account("ready"),
        *seats("ready", 10),
        healthy_account("gated"),
        low_nps,
        *seats("gated", 10),
        plain,
    ]


def expected_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the domain gives for these events, in the scorecard's order."""
    rules = load(ROOT / "config" / "rules.yaml")
    detector = Detector(rules)
    states: dict[str, AccountState] = {}
    for decoded in (decode(orjson.dumps(e)).events[0] for e in events):
        state = states.setdefault(decoded.account_id, AccountState(decoded.account_id))
        detector.apply(state, decoded)
    return ranked(scorecard_row(state, rules) for state in states.values())


def get(worker: Any, query: str = "", token: str | None = TOKEN) -> tuple[int, Any, bytes]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{worker.url}/scorecard{query}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def command(worker: Any, *args: str) -> bytes:
    env = {
        **os.environ,
        "REDIS_URL": worker.env["REDIS_URL"],
        "REDIS_PREFIX": worker.env["REDIS_PREFIX"],
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams", "scorecard", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))


def chromium() -> str:
    """Debian's chromium, installed by the project's script when missing, never skipped."""
    if shutil.which("chromium") is None:
        subprocess.run([ROOT / "scripts" / "ensure-chromium.sh"], check=True)
    return "chromium"


class ScorecardTable(HTMLParser):
    """The rows of the page's table as the browser built it: per account, its fields and
    criteria by their data attributes, and every cell's text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.cell: tuple[str, str] | None = None
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "tr" and named.get("data-account-id") is not None:
            self.rows.append({"account_id": named["data-account-id"], "criteria": {}})
        elif tag == "td" and self.rows:
            if named.get("data-criterion"):
                self.rows[-1]["criteria"][named["data-criterion"]] = named["class"]
            self.cell = ("field", named["data-field"]) if named.get("data-field") else None
        elif tag == "a":
            self.links.append(named.get("href") or "")

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.rows[-1][self.cell[1]] = self.rows[-1].get(self.cell[1], "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.cell = None


def rendered(page: bytes, directory: Path) -> ScorecardTable:
    """The page's DOM after headless Chromium loaded it (no network: it needs none)."""
    path = directory / "scorecard.html"
    path.write_bytes(page)
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    dom = subprocess.run(
        [
            chromium(),
            "--headless",
            "--disable-gpu",
            *sandbox,
            f"--user-data-dir={directory / 'chromium-profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    table = ScorecardTable()
    table.feed(dom.decode())
    return table


def test_the_scorecard_over_http_and_the_command(
    worker_factory: Any, kafka_io: Any, tmp_path: Path
) -> None:
    events = scenario()
    expected = expected_rows(events)
    assert [r["account_id"] for r in expected] == ["ready", "plain", "gated"]
    assert [r["recommended_motion"] for r in expected] == ["csm_led", "none", "not_ready"]
    assert [r["expansion_readiness"] for r in expected] == [100, 100, 75]
    assert expected[0]["active_triggers"] == ["seat_saturation"]
    assert expected[0]["estimated_expansion_acv"] == 7200.0  # 12 x 15 % of 4,000
    assert expected[2]["criteria"]["nps"] == "unmet"

    worker = worker_factory(SCORECARD_TOKEN=TOKEN)
    topic = worker.env["TOPIC_EVENTS"]
    for e in events:
        kafka_io.produce(topic, orjson.dumps(e), key=e["account_id"].encode(), flush=False)
    kafka_io.flush()

    deadline = time.monotonic() + 90
    rows: list[dict[str, Any]] = []
    while rows != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        status, _, body = get(worker, "?format=json")
        assert status == 200, body
        rows = orjson.loads(body)
    assert rows == expected, worker.log_tail()

    # the command reads the same rows
    assert orjson.loads(command(worker, "--format", "json")) == expected
    status, headers, http_csv = get(worker, "?format=csv")
    assert (status, headers.get_content_type()) == (200, "text/csv")
    assert command(worker, "--format", "csv") == http_csv
    header, *lines = csv_rows(http_csv)
    assert header[:5] == [
        "account_id",
        "segment",
        "health_score",
        "activation_status",
        "expansion_readiness",
    ]
    assert [line[0] for line in lines] == ["ready", "plain", "gated"]
    assert dict(zip(header, lines[2], strict=True))["criteria.nps"] == "unmet"
    table = command(worker, "--top", "1").decode()
    assert "ready" in table and "gated" not in table

    # top and segment
    assert [r["account_id"] for r in orjson.loads(get(worker, "?format=json&top=2")[2])] == [
        "ready",
        "plain",
    ]
    smb = orjson.loads(get(worker, "?format=json&segment=smb")[2])
    assert [r["account_id"] for r in smb] == ["plain"]
    assert orjson.loads(command(worker, "--segment", "mid_market", "--format", "json")) == [
        expected[0],
        expected[2],
    ]
    status, _, body = get(worker, "?format=xml")
    assert status == 400 and b"format" in body

    # the page, as a browser builds it
    status, headers, page = get(worker, "?format=html")
    assert (status, headers.get_content_type()) == (200, "text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    dom = rendered(page, tmp_path)
    assert [
        (r["account_id"], r["expansion_readiness"], r["recommended_motion"], r["criteria"])
        for r in dom.rows
    ] == [
        (r["account_id"], str(r["expansion_readiness"]), r["recommended_motion"], r["criteria"])
        for r in expected
    ]
    assert dom.rows[0]["active_triggers"] == "seat_saturation"
    assert dom.rows[0]["estimated_expansion_acv"] == "7,200.00"
    assert "?format=html&segment=enterprise" in dom.links

    # only with the token
    for token in (None, "wrong-token", TOKEN[:-1]):
        status, headers, body = get(worker, "?format=json", token=token)
        assert status == 401 and b"ready" not in body
        assert "Bearer" in headers["WWW-Authenticate"]


def test_the_scorecard_is_off_without_a_token(worker_factory: Any) -> None:
    worker = worker_factory(SCORECARD_TOKEN="")
    status, _, body = get(worker, "?format=json")
    assert status == 404
    assert b"SCORECARD_TOKEN" in body

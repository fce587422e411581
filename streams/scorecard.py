"""The readiness scorecard for people: table, JSON, CSV or page; its command; who may read it."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import csv
import hmac
import io
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

import orjson

from streams.domain.gates import GATES
from streams.io.ledger import Ledger, redacted
from streams.io.scorecard import ScorecardView
from streams.rules import SEGMENTS
from streams.settings import Settings

CRITERIA = tuple(gate.name for gate in GATES)
# The CSV's columns: a row's fields, with one column per criterion in place of `criteria`.
COLUMNS = (
    "account_id",
    "segment",
    "health_score",
    "activation_status",
    "expansion_readiness",
    *(f"criteria.{name}" for name in CRITERIA),
    "active_triggers",
    "recommended_motion",
    "estimated_expansion_acv",
    "updated_at",
)
MARKS = {"met": "✓", "unmet": "✗", "unknown": "?"}
# A spreadsheet takes a cell starting with one of these for a formula: customer-sent text
# (an account_id) must stay text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
WEB_FORMATS = ("html", "json", "csv")
CONTENT_TYPES = {
    "html": "text/html",
    "json": "application/json",
    "csv": "text/csv",
}
# The page runs nothing and fetches nothing; its own inline style is all it needs.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Query:
    """Which rows to show, and how."""

    top: int | None = None
    segment: str | None = None
    format: str = "html"


class BadQuery(ValueError):
    """A query parameter that is not one the scorecard takes; the message names it."""


def parse_query(params: Mapping[str, str]) -> Query:
    """The query of GET /scorecard?top=N&segment=S&format=html|json|csv."""
    top = params.get("top")
    if top is not None and (not top.isdigit() or int(top) < 1):
        raise BadQuery(f"top must be a whole number of at least 1, not {top!r}")
    segment = params.get("segment") or None
    if segment is not None and segment not in SEGMENTS:
        raise BadQuery(f"segment must be one of {', '.join(SEGMENTS)}, not {segment!r}")
    fmt = params.get("format", "html")
    if fmt not in WEB_FORMATS:
        raise BadQuery(f"format must be one of {', '.join(WEB_FORMATS)}, not {fmt!r}")
    return Query(None if top is None else int(top), segment, fmt)


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries the token: `Bearer <token>`, or, for a
    browser's own login prompt, Basic credentials with the token as password. Compared in
    constant time."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    return hmac.compare_digest(given.encode(), token.encode())


def to_json(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(rows)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def to_csv(rows: list[dict[str, Any]]) -> str:
    """A header row, then one row per account; active triggers separated by spaces."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        flat = {
            **row,
            **{f"criteria.{name}": row["criteria"][name] for name in CRITERIA},
            "active_triggers": " ".join(row["active_triggers"]),
        }
        writer.writerow([_cell(flat[column]) for column in COLUMNS])
    return out.getvalue()


def to_table(rows: list[dict[str, Any]]) -> str:
    """The rows for a terminal: rank, account, readiness, motion, criteria marks, ACV."""
    marks = " ".join(name[:4] for name in CRITERIA)
    lines = [
        f"{'#':>3} {'account':<16} {'segment':<10} {'ready':>5}  {'motion':<10} {marks:<34} "
        f"{'est. ACV':>10}  active triggers"
    ]
    for n, row in enumerate(rows, start=1):
        criteria = " ".join(f"{MARKS[row['criteria'][name]]:<4}" for name in CRITERIA)
        lines.append(
            f"{n:>3} {row['account_id']:<16} {row['segment']:<10} "
            f"{row['expansion_readiness']:>4}%  {row['recommended_motion']:<10} {criteria:<34} "
            f"{row['estimated_expansion_acv']:>10,.0f}  {' '.join(row['active_triggers']) or '-'}"
        )
    lines.append(f"({len(rows)} accounts; criteria: ✓ met, ✗ unmet, ? unknown)")
    return "\n".join(lines)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
nav a { margin-right: .8em; } nav a[aria-current] { font-weight: bold; color: #222; }
table { border-collapse: collapse; margin-top: 1em; }
th, td { padding: .3em .6em; border-bottom: 1px solid #ddd; text-align: left; }
td { white-space: nowrap; } td.triggers { white-space: normal; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.met { color: #187a2f; } td.unmet { color: #b3261e; font-weight: bold; }
td.unknown { color: #888; }
.motion-not_ready { color: #b3261e; } .motion-sales_led, .motion-csm_led { font-weight: bold; }
"""


def to_html(rows: list[dict[str, Any]], query: Query) -> str:
    """The page a CS lead keeps open: self-contained (no script, nothing fetched), the ranked
    table, and a link per segment."""

    def link(segment: str | None) -> str:
        params = {"format": "html", **({} if query.top is None else {"top": str(query.top)})}
        href = "?" + urlencode({**params, **({} if segment is None else {"segment": segment})})
        current = ' aria-current="page"' if segment == query.segment else ""
        return f'<a href="{escape(href)}"{current}>{escape(segment or "all")}</a>'

    head = "".join(
        f'<th title="{escape(name)}">{escape(name.replace("_", " "))}</th>' for name in CRITERIA
    )
    body = []
    for n, row in enumerate(rows, start=1):
        marks = "".join(
            f'<td class="{status}" data-criterion="{name}" title="{name}: {status}">'
            f"{MARKS[status]}</td>"
            for name, status in ((name, row["criteria"][name]) for name in CRITERIA)
        )
        health = "" if row["health_score"] is None else f"{row['health_score']:g}"
        motion = row["recommended_motion"]
        triggers = " ".join(row["active_triggers"])
        body.append(
            f'<tr data-account-id="{escape(row["account_id"])}">'
            f'<td class="num">{n}</td><td>{escape(row["account_id"])}</td>'
            f"<td>{escape(row['segment'])}</td>"
            f'<td class="num" data-field="expansion_readiness">{row["expansion_readiness"]}</td>'
            f'<td class="motion-{motion}" data-field="recommended_motion">{motion}</td>{marks}'
            f'<td class="triggers" data-field="active_triggers">{escape(triggers)}</td>'
            f'<td class="num" data-field="estimated_expansion_acv">'
            f"{row['estimated_expansion_acv']:,.2f}</td>"
            f'<td class="num">{health}</td><td>{escape(row["activation_status"])}</td>'
            f"<td>{escape(row['updated_at'])}</td></tr>"
        )
    shown = escape(query.segment or "every segment")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{PAGE_POLICY}">'
        "<title>Expansion readiness scorecard</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Expansion readiness</h1>"
        f"<nav>Segment: {''.join(link(s) for s in (None, *SEGMENTS))}</nav>"
        f"<p>{len(rows)} accounts of {shown}, most ready first, then by estimated ACV. "
        "Criteria: ✓ met, ✗ unmet, ? unknown (no data: the gate passes).</p>"
        '<table id="scorecard"><thead><tr><th>#</th><th>account</th><th>segment</th>'
        f"<th>readiness %</th><th>motion</th>{head}<th>active triggers</th>"
        "<th>est. ACV (USD)</th><th>health</th><th>activation status</th><th>updated</th>"
        "</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></body></html>"
    )


def render(rows: list[dict[str, Any]], query: Query) -> bytes:
    """The rows in the query's format, as a response body."""
    if query.format == "json":
        return to_json(rows)
    if query.format == "csv":
        return to_csv(rows).encode()
    if query.format == "html":
        return to_html(rows, query).encode()
    return (to_table(rows) + "\n").encode()


async def _read(settings: Settings, query: Query) -> list[dict[str, Any]]:
    ledger = Ledger(settings.redis_url, settings.redis_prefix, retry_max_seconds=1.0)
    try:
        if not await ledger.ping():
            raise ConnectionError
        return await ScorecardView(ledger).read(query.top, query.segment)
    finally:
        await ledger.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams scorecard",
        description="Print the readiness scorecard the workers keep in Redis (REDIS_URL, "
        "REDIS_PREFIX): most ready accounts first, then by estimated ACV.",
    )
    parser.add_argument("--top", type=int, help="only the first N accounts")
    parser.add_argument("--segment", choices=SEGMENTS, help="only this segment's accounts")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error("--top must be at least 1")
    settings = Settings()
    query = Query(args.top, args.segment, args.format)
    try:
        rows = asyncio.run(_read(settings, query))
    except ConnectionError:
        print(f"Redis does not answer at {redacted(settings.redis_url)}", file=sys.stderr)
        return 1
    body = render(rows, query)
    sys.stdout.buffer.write(body + b"\n" if query.format == "json" else body)
    return 0

"""The backtest's HTML report: one self-contained page of tables and inline SVG plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from streams.backtest.measure import COVERAGE_MIN, FIRE_RATE_RANGE, FPR_MAX

COLOURS = ("#1f6fb4", "#d1495b", "#2e933c", "#8c5ec6", "#e08a00", "#4a4a4a")
LEAD_BIN_DAYS = 7
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e3e3; text-align: right; }
th { background: #f5f5f5; font-weight: 600; }
td.name, th.name { text-align: left; }
td.hint { text-align: left; color: #a33; } td.meets { text-align: left; color: #2e7d32; }
tr.any td { font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #e3e3e3; border-radius: 4px; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
            vertical-align: -1px; }
.muted { color: #666; } code { background: #f3f3f3; padding: 0 3px; }
"""


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1%}"


def _num(value: int) -> str:
    return f"{value:,}"


def _days(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:g}&nbsp;d"


COLUMNS: list[tuple[str, str, Any]] = [
    ("fired", "published signals", lambda f: _num(f["fires"])),
    ("accounts", "distinct accounts signalled", lambda f: _num(f["accounts"])),
    (
        "fire rate / quarter",
        "accounts signalled / accounts with events",
        lambda f: _pct(f["fire_rate"]),
    ),
    ("coverage", "expansions preceded by a signal", lambda f: _pct(f["coverage"])),
    ("FPR", "signals not followed by an expansion", lambda f: _pct(f["false_positive_rate"])),
    ("open", "signals whose window is not over", lambda f: _num(f["open"])),
    ("median lead", "first signal to expansion", lambda f: _days(f["median_lead_days"])),
    ("gated", "held back by a gate", lambda f: _num(f["decisions"]["gated"])),
    ("cooldown", "held back by the cooldown", lambda f: _num(f["decisions"]["cooldown"])),
    ("collision", "joined a primary as a co-signal", lambda f: _num(f["decisions"]["collision"])),
]


ANSWER_COLUMNS: list[tuple[str, str, Any]] = [
    ("fired", "published signals", lambda f: _num(f["fires"])),
    *(
        (
            stage,
            f"signals answered {stage}",
            lambda f, stage=stage: _num(f["answers"]["stages"][stage]),
        )
        for stage in ("opportunity", "won", "lost", "rejected")
    ),
    ("self-serve", "wins by a self-serve conversion", lambda f: _num(f["answers"]["self_serve"])),
    (
        "trigger to opportunity",
        "opportunity / fired",
        lambda f: _pct(f["answers"]["opportunity_rate"]),
    ),
    ("opportunity to close", "won / (won + lost)", lambda f: _pct(f["answers"]["close_rate"])),
    (
        "false positive rate",
        "rejected / (won + lost + rejected)",
        lambda f: _pct(f["answers"]["false_positive_rate"]),
    ),
    (
        "cycle time",
        "median days from signal to won",
        lambda f: _days(f["answers"]["median_cycle_days"]),
    ),
    ("won MRR", "expansion MRR the wins added", lambda f: f"${f['answers']['won_mrr']:,.0f}"),
]


def _table(
    results: dict[str, Any], rows: str, hint: bool, columns: list[tuple[str, str, Any]] = COLUMNS
) -> str:
    runs = results["runs"]
    names = [*runs[0][rows], "any"]
    span = len(columns) + (1 if hint else 0)
    head = ["<table><thead>"]
    if len(runs) > 1:
        head.append('<tr><th class="name"></th>')
        for index, run in enumerate(runs):
            colour = COLOURS[index % len(COLOURS)]
            head.append(
                f'<th colspan="{span}" style="border-bottom: 3px solid {colour}">'
                f"{escape(run['label'])}</th>"
            )
        head.append("</tr>")
    head.append(f'<tr><th class="name">{"trigger" if rows == "triggers" else "route"}</th>')
    for _ in runs:
        head += [f'<th title="{escape(tip)}">{escape(name)}</th>' for name, tip, _ in columns]
        if hint:
            head.append('<th class="name">hint</th>')
    head.append("</tr></thead><tbody>")
    body = []
    for name in names:
        cells = [
            f'<tr class="{"any" if name == "any" else ""}"><td class="name">{escape(name)}</td>'
        ]
        for run in runs:
            figures = run["any"] if name == "any" else run[rows][name]
            cells += [f"<td>{cell(figures)}</td>" for _, _, cell in columns]
            if hint:
                if name == "any":
                    cells.append("<td></td>")
                elif figures["hints"]:
                    cells.append(f'<td class="hint">{escape(", ".join(figures["hints"]))}</td>')
                else:
                    cells.append('<td class="meets">meets</td>')
        body.append("".join(cells) + "</tr>")
    return "".join(head) + "".join(body) + "</tbody></table>"


def _quarters(results: dict[str, Any]) -> str:
    quarters = results["quarters"]
    runs = results["runs"]
    head = '<table><thead><tr><th class="name">trigger</th>'
    if len(runs) > 1:
        head += '<th class="name">rules</th>'
    head += "".join(
        f"<th>{escape(q['quarter'])}{'' if q['pooled'] else '*'}<br>"
        f'<span class="muted">{q["eligible_accounts"]:,} accts</span></th>'
        for q in quarters
    )
    head += "</tr></thead><tbody>"
    rows = []
    for trigger in [*runs[0]["triggers"], "any"]:
        for run in runs:
            figures = run["any"] if trigger == "any" else run["triggers"][trigger]
            row = f'<tr><td class="name">{escape(trigger)}</td>'
            if len(runs) > 1:
                row += f'<td class="name">{escape(run["label"])}</td>'
            row += "".join(
                f"<td>{_pct(figures['fire_rate_by_quarter'].get(q['quarter']))}</td>"
                for q in quarters
            )
            rows.append(row + "</tr>")
    note = (
        '<p class="muted">* covered less than half by the data; not pooled into the fire '
        "rate above.</p>"
        if any(not q["pooled"] for q in quarters)
        else ""
    )
    return head + "".join(rows) + "</tbody></table>" + note


def _nice_ceiling(value: float, steps: Sequence[float] = (1.0, 2.0, 2.5, 5.0)) -> float:
    """The smallest of steps x 10^k at or above value (value > 0)."""
    exponent = math.floor(math.log10(value))
    for step in (*steps, 10.0):
        top = step * 10**exponent
        if top >= value * (1 - 1e-9):
            return top
    return 10.0 ** (exponent + 1)


WIDTH, HEIGHT = 340, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 24, 34


def _frame(title: str, top: float, percent: bool) -> list[str]:
    """An SVG with a title, a y axis from 0 to `top` and grid lines."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-size="10" '
        f'font-family="system-ui, sans-serif">',
        f'<text x="{LEFT}" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
    ]
    for step in range(3):
        value = top * step / 2
        y = TOP + plot_h - plot_h * step / 2
        label = (
            f"{value:.0%}"
            if percent and top >= 0.1
            else (f"{value:.1%}" if percent else f"{value:g}")
        )
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e6e6e6"/>'
            f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" fill="#666">{label}</text>'
        )
    return parts


def line_chart(
    title: str, series: Sequence[tuple[str, str, Sequence[float | None]]], x_labels: list[str]
) -> str:
    """Lines of shares (0..1) over x, one per series (label, colour, values); None breaks one."""
    values = [v for _, _, points in series for v in points if v is not None]
    top = _nice_ceiling(max(values)) if values and max(values) > 0 else 0.01
    parts = _frame(title, top, percent=True)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(x_labels), 1)

    def x_of(index: int) -> float:
        return LEFT + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y_of(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    for index in sorted({0, (count - 1) // 2, count - 1}):
        if index < len(x_labels):
            anchor = "start" if index == 0 else "end" if index == count - 1 else "middle"
            parts.append(
                f'<text x="{x_of(index):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="{anchor}" '
                f'fill="#666">{escape(x_labels[index])}</text>'
            )
    for label, colour, points in series:
        run: list[str] = []
        segments = [run]
        for index, value in enumerate(points):
            if value is None:
                run = []
                segments.append(run)
                continue
            run.append(f"{x_of(index):.1f},{y_of(value):.1f}")
            parts.append(
                f'<circle cx="{x_of(index):.1f}" cy="{y_of(value):.1f}" r="1.8" fill="{colour}">'
                f"<title>{escape(label)}, week of {escape(x_labels[index])}: {value:.1%}</title>"
                "</circle>"
            )
        for segment in segments:
            if len(segment) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{" ".join(segment)}"/>'
                )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str, series: Sequence[tuple[str, str, Sequence[int]]], bin_labels: list[str]
) -> str:
    """Grouped bars of counts per bin, one bar per series (label, colour, counts) in each."""
    values = [v for _, _, counts in series for v in counts]
    # an even top, so that the middle grid line is a whole count too
    most = max(values, default=0)
    top = most + most % 2 if most <= 10 else _nice_ceiling(most, (2.0, 3.0, 4.0, 5.0, 6.0, 8.0))
    top = max(top, 2)
    parts = _frame(title, top, percent=False)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bins = max(len(bin_labels), 1)
    slot = plot_w / bins
    bar = max(1.0, (slot - 2) / max(len(series), 1))
    for index, label in enumerate(bin_labels):
        if index % 2 == 0 or bins <= 8:
            parts.append(
                f'<text x="{LEFT + slot * (index + 0.5):.1f}" y="{HEIGHT - BOTTOM + 14}" '
                f'text-anchor="middle" fill="#666">{escape(label)}</text>'
            )
    for position, (label, colour, counts) in enumerate(series):
        for index, count in enumerate(counts):
            if not count:
                continue
            height = plot_h * count / top
            x = LEFT + slot * index + 1 + bar * position
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(label)}, '
                f"{escape(bin_labels[index])} days: {count}</title></rect>"
            )
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end" fill="#666">'
        "days before the expansion</text></svg>"
    )
    return "".join(parts)


def _legend(runs: list[dict[str, Any]]) -> str:
    return (
        '<p class="legend">'
        + "".join(
            f'<span><i style="background:{COLOURS[n % len(COLOURS)]}"></i>'
            f"{escape(run['label'])}</span>"
            for n, run in enumerate(runs)
        )
        + "</p>"
    )


def _fire_rate_charts(results: dict[str, Any]) -> str:
    runs = results["runs"]
    weeks = results["weeks"]
    charts = []
    for trigger in [*runs[0]["triggers"], "any"]:
        series = [
            (
                run["label"],
                COLOURS[n % len(COLOURS)],
                (run["any"] if trigger == "any" else run["triggers"][trigger])["fire_rate_by_week"],
            )
            for n, run in enumerate(runs)
        ]
        charts.append(line_chart("any trigger" if trigger == "any" else trigger, series, weeks))
    return '<div class="charts">' + "".join(charts) + "</div>"


def _lead_charts(results: dict[str, Any]) -> str:
    runs = results["runs"]
    window = results["window_days"]
    bins = math.ceil((window + 1) / LEAD_BIN_DAYS)
    labels = [
        f"{b * LEAD_BIN_DAYS}-{min(window, (b + 1) * LEAD_BIN_DAYS - 1)}" for b in range(bins)
    ]
    charts = []
    for trigger in [*runs[0]["triggers"], "any"]:
        series = []
        for n, run in enumerate(runs):
            figures = run["any"] if trigger == "any" else run["triggers"][trigger]
            counts = [0] * bins
            for lead in figures["lead_days"]:
                counts[min(bins - 1, lead // LEAD_BIN_DAYS)] += 1
            series.append((run["label"], COLOURS[n % len(COLOURS)], counts))
        charts.append(bar_chart("any trigger" if trigger == "any" else trigger, series, labels))
    return '<div class="charts">' + "".join(charts) + "</div>"


def _skipped(results: dict[str, Any]) -> str:
    if not results["skipped_lines"]:
        return "<p>No line was skipped.</p>"
    reasons = ", ".join(f"{escape(r)} {n:,}" for r, n in results["skipped_by_reason"].items())
    items = "".join(
        f"<li>line {s['line']}"
        + ("" if s["index"] is None else f" [event {s['index']}]")
        + f": <code>{escape(s['reason'])}</code> {escape(s['detail'])}</li>"
        for s in results["skipped"][:100]
    )
    more = results["skipped_lines"] - min(100, len(results["skipped"]))
    tail = f"<p class='muted'>and {more:,} more.</p>" if more > 0 else ""
    return f"<p>{results['skipped_lines']:,} skipped ({reasons}):</p><ul>{items}</ul>{tail}"


def render(results: dict[str, Any]) -> str:
    """The whole report as one HTML page (no script, no external resource)."""
    window = results["window_days"]
    low, high = FIRE_RATE_RANGE
    runs = results["runs"]
    rules = "".join(
        f"<li><code>{escape(run['label'])}</code> (digest {escape(run['rules_digest'])}): "
        f"{run['signals']:,} signals, {run['decisions']:,} decisions, "
        f"{run['duplicate_events']:,} duplicate events, {run['late_events']:,} late</li>"
        for run in runs
    )
    kinds = ", ".join(f"{escape(k)} {n:,}" for k, n in results["outcomes_by_kind"].items())
    reordered = (
        f"<p>{results['reordered_accounts']:,} accounts were out of time order in the file and "
        "were replayed sorted by timestamp.</p>"
        if results["reordered_accounts"]
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Backtest: {escape(results["events_file"])}</title>
<style>{STYLE}</style></head><body>
<h1>Backtest of <code>{escape(results["events_file"])}</code></h1>
<p>{results["events"]:,} events on {results["lines"]:,} lines from {results["accounts"]:,}
accounts, {escape(str(results["first_day"]))} to {escape(str(results["last_day"]))};
{results["outcomes_in_span"]:,} expansions in that span{f" ({kinds})" if kinds else ""}.
Replayed in event-time order through the detector's own decisions
(<code>streams.domain</code>), one rules file at a time:</p>
<ul>{rules}</ul>{reordered}
<p class="muted">The bar for automating a trigger: coverage &ge; {COVERAGE_MIN:.0%},
false positive rate &lt; {FPR_MAX:.0%}, fire rate {low:.0%}&ndash;{high:.0%} of eligible
accounts per quarter.</p>
{_legend(runs) if len(runs) > 1 else ""}
<h2>Per trigger</h2>
{_table(results, "triggers", hint=True)}
<h2>Outcomes per trigger</h2>
<p class="muted">What the events' own <code>expansion_outcome</code> events and self-serve
conversions said of the published signals (contract section 10).</p>
{_table(results, "triggers", hint=False, columns=ANSWER_COLUMNS)}
<h2>Per route</h2>
{_table(results, "routes", hint=False)}
<h2>Fire rate per week</h2>
<p class="muted">Accounts with a published signal that week / accounts with an event that
week.</p>
{_legend(runs)}
{_fire_rate_charts(results)}
<h2>Fire rate per quarter</h2>
{_quarters(results)}
<h2>Lead time</h2>
<p class="muted">Days from the first signal in the {window} days before an expansion to the
expansion, for each expansion the trigger covered.</p>
{_legend(runs)}
{_lead_charts(results)}
<h2>Definitions</h2>
<ul>
<li><b>Eligible accounts</b> of a calendar quarter (UTC): accounts with at least one valid
event in it. <b>Fire rate</b>: eligible accounts with a published signal in the quarter,
pooled over the quarters the data covers at least half of.</li>
<li><b>Coverage</b>: expansions (dated within the events' span) with a published signal on
the same account on their date or in the {window} days before.</li>
<li><b>False positive rate</b>: signals with no expansion on the account on their date or in
the {window} days after, among signals at least {window} days before the last event.
Later signals are <b>open</b>: counted, but not in the rate.</li>
<li><b>Lead time</b>: days from the first signal in the {window} days before a covered
expansion to the expansion; the median is shown.</li>
<li><b>gated, cooldown, collision</b>: triggers that fired but were not published, from the
decisions the worker writes to <code>expansion-decisions</code>.</li>
</ul>
<h2>Skipped input</h2>
{_skipped(results)}
</body></html>
"""

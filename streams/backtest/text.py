"""The backtest's summary on the terminal: a table per trigger and per route, and the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.backtest.measure import COVERAGE_MIN, FIRE_RATE_RANGE, FPR_MAX


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _days(value: float | None) -> str:
    return "-" if value is None else f"{value:g}d"


# (heading, width, cell)
Column = tuple[str, int, Callable[[dict[str, Any]], str]]
METRIC_COLUMNS: list[Column] = [
    ("fired", 6, lambda f: f"{f['fires']:,}"),
    ("fire/q", 7, lambda f: _percent(f["fire_rate"])),
    ("cover", 7, lambda f: _percent(f["coverage"])),
    ("FPR", 7, lambda f: _percent(f["false_positive_rate"])),
    ("open", 6, lambda f: f"{f['open']:,}"),
    ("lead", 5, lambda f: _days(f["median_lead_days"])),
]
DECISION_COLUMNS: list[Column] = [
    ("gated", 6, lambda f: f"{f['decisions']['gated']:,}"),
    ("cool", 6, lambda f: f"{f['decisions']['cooldown']:,}"),
    ("coll", 6, lambda f: f"{f['decisions']['collision']:,}"),
]
HINT_COLUMN: Column = ("hint", 4, lambda f: " ".join(f["hints"]) or "meets")
ANSWER_COLUMNS: list[Column] = [
    ("fired", 6, lambda f: f"{f['fires']:,}"),
    *(
        (heading, 5, lambda f, stage=stage: f"{f['answers']['stages'][stage]:,}")
        for heading, stage in (
            ("opp", "opportunity"),
            ("won", "won"),
            ("lost", "lost"),
            ("rej", "rejected"),
        )
    ),
    ("->opp", 7, lambda f: _percent(f["answers"]["opportunity_rate"])),
    ("close", 7, lambda f: _percent(f["answers"]["close_rate"])),
    ("FPR", 7, lambda f: _percent(f["answers"]["false_positive_rate"])),
    ("cycle", 6, lambda f: _days(f["answers"]["median_cycle_days"])),
    ("won MRR", 8, lambda f: f"${f['answers']['won_mrr']:,.0f}"),
]


def _table(results: dict[str, Any], rows: str, columns: list[Column], first: str) -> list[str]:
    """One row per trigger (or route), a group of columns per rules file, side by side."""
    runs = results["runs"]
    names = [*runs[0][rows], "any"]
    cells = [
        [
            (
                ""
                if name == "any" and h == "hint"
                else cell(run["any"] if name == "any" else run[rows][name])
            )
            for run in runs
            for h, _, cell in columns
        ]
        for name in names
    ]
    headings = [h for _ in runs for h, _, _ in columns]
    widths = [
        max(w, *(len(row[i]) for row in cells))
        for i, (_, w) in enumerate((h, w) for _ in runs for h, w, _ in columns)
    ]

    def line(name: str, values: list[str]) -> str:
        text = f"{name:<22}"
        for heading, width, value in zip(headings, widths, values, strict=True):
            text += f"  {value:<{width}}" if heading == "hint" else f"  {value:>{width}}"
        return text.rstrip()

    lines = []
    if len(runs) > 1:
        group = len(columns)
        spans = [sum(w + 2 for w in widths[n * group : (n + 1) * group]) for n in range(len(runs))]
        lines.append(
            " " * 22
            + "".join(
                f"  {_fit(run['label'], span - 2):<{span - 2}}"
                for run, span in zip(runs, spans, strict=True)
            ).rstrip()
        )
    lines.append(line(first, headings))
    lines += [line(name, row) for name, row in zip(names, cells, strict=True)]
    return lines


def _fit(text: str, width: int) -> str:
    """`text`, or its end after "..." when it is wider than `width`."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def render_text(results: dict[str, Any]) -> str:
    """The readable summary printed on the terminal."""
    out = []
    window = results["window_days"]
    skipped = results["skipped_lines"]
    reasons = ", ".join(f"{r} {n:,}" for r, n in results["skipped_by_reason"].items())
    out.append(
        f"events   {results['events_file']}: {results['events']:,} events on "
        f"{results['lines']:,} lines, {results['accounts']:,} accounts, "
        + (f"{results['first_day']} .. {results['last_day']}" if results["events"] else "no events")
        + (f"; skipped {skipped:,} ({reasons})" if skipped else "")
    )
    if results["reordered_accounts"]:
        out.append(
            f"         {results['reordered_accounts']:,} accounts were out of time order in the "
            "file; they were replayed sorted by timestamp"
        )
    kinds = ", ".join(f"{k} {n:,}" for k, n in results["outcomes_by_kind"].items())
    outside = results["outcomes"] - results["outcomes_in_span"]
    out.append(
        f"outcomes {results['outcomes_in_span']:,} expansions in the events' span"
        + (f" ({kinds})" if kinds else "")
        + (f"; {outside:,} outside it, not counted" if outside else "")
    )
    for run in results["runs"]:
        out.append(
            f"rules    {run['label']} (digest {run['rules_digest']}): {run['signals']:,} signals, "
            f"{run['decisions']:,} decisions, {run['duplicate_events']:,} duplicate events, "
            f"{run['late_events']:,} late"
        )
    pooled = [q["quarter"] for q in results["quarters"] if q["pooled"]]
    single = len(results["runs"]) == 1
    trigger_columns = METRIC_COLUMNS + (DECISION_COLUMNS if single else []) + [HINT_COLUMN]
    route_columns = METRIC_COLUMNS + (DECISION_COLUMNS if single else [])
    out += ["", f"== per trigger (window {window} days)"]
    out += _table(results, "triggers", trigger_columns, "trigger")
    if not single:
        out += ["", "== fired but not published, per trigger"]
        out += _table(results, "triggers", DECISION_COLUMNS, "trigger")
    out += [
        "",
        "== outcomes per trigger (the events' expansion_outcome and self-serve conversions)",
    ]
    out += _table(results, "triggers", ANSWER_COLUMNS, "trigger")
    out += ["", "== per route"]
    out += _table(results, "routes", route_columns, "route")
    if not single:
        out += ["", "== fired but not published, per route"]
        out += _table(results, "routes", DECISION_COLUMNS, "route")
    low, high = FIRE_RATE_RANGE
    out += [
        "",
        f"fire/q  accounts with a signal / accounts with events, per quarter "
        f"({', '.join(pooled) or '-'} pooled)",
        f"cover   expansions with a signal on the account in the {window} days before",
        f"FPR     signals with no expansion in the {window} days after; open: signals less "
        f"than {window} days before the data ends, not in FPR",
        "lead    median days from the first such signal to the expansion",
        "gated, cool, coll   fired but not published: a gate, the cooldown, a collision",
        "opp..rej  signals answered with each stage (outcomes); ->opp opp / fired; close won / "
        "(won + lost);",
        "          FPR (outcomes) rej / (won + lost + rej); cycle median days from signal to won",
        f"hint    the bar for automating a trigger: cover >= {COVERAGE_MIN:.0%}, "
        f"FPR < {FPR_MAX:.0%}, fire/q {low:.0%}-{high:.0%}",
    ]
    return "\n".join(out)

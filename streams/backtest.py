"""Replays a file of events through the detector's own decisions and measures each trigger.

The replay calls `Detector.apply` with one `AccountState` per account, event by event in
event-time order, and drops a signal whose id was already published, exactly as the worker
does with its Redis ledger; so the signals it reports are the ones the worker would publish.
Accounts are independent, so each account's events are replayed in time order (ties in file
order); a file whose accounts are already in order (the simulator's, a keyed topic's dump) is
replayed in one streaming pass, and any account that is not is replayed again, sorted, in a
second pass that holds only that account's events in memory.

Definitions (each measured per trigger, per route, and for any signal; W = --window, 90 days):

- eligible accounts of a calendar quarter (UTC): accounts with at least one valid event in it;
- fire rate: accounts with a published signal in the quarter / eligible accounts, pooled over
  the quarters the data covers at least half of (all quarters if it covers none that much);
- coverage: expansions with a published signal on the same account on their date or in the W
  days before it / expansions dated within the events' time span;
- false positive rate: signals with no expansion on the account on their date or in the W days
  after / signals whose W days lie inside the data. Signals less than W days before the last
  event are "open": their outcome is not known yet, and they are left out of the rate;
- lead time: days from the first signal in the W days before a covered expansion to it.
"""

from __future__ import annotations

import argparse
import bisect
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.clock import DAY
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.events import Event, decode
from streams.rules import TRIGGERS, Rules, RulesError, load

WINDOW_DAYS = 90
ROUTES = ("in_app", "csm", "sales")
# The bar for automating a trigger.
COVERAGE_MIN = 0.40
FPR_MAX = 0.50
FIRE_RATE_RANGE = (0.05, 0.15)
REASON_GROUPS = {
    "gated": ("gated_not_activated", "gated_health", "gated_churn_risk"),
    "cooldown": ("cooldown",),
    "collision": ("collision",),
}
SHOWN_SKIPS = 100  # skipped lines printed on stderr; the rest are counted
KEPT_SKIPS = 1_000  # skipped lines listed in the results


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line, or one event of a batch on it, that the backtest could not use."""

    line: int
    index: int | None  # position in a batch envelope; None for the whole line
    reason: str
    detail: str

    def describe(self, path: str) -> str:
        where = f"{path}:{self.line}" + ("" if self.index is None else f" [event {self.index}]")
        return f"{where}: {self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Expansion:
    """One ground-truth expansion: the account bought seats, a tier or capacity on `day`."""

    account_id: str
    kind: str
    day: int  # UTC date, as days since the epoch


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What the results keep of a decision (the full record is the worker's audit log)."""

    decision_id: str
    account_id: str
    trigger: str
    route: str
    reason: str
    day: int


@dataclass
class Run:
    """Everything one rules file led to over the replay."""

    label: str
    rules: Rules
    signals: list[dict[str, Any]] = field(default_factory=list)  # published, in order
    decisions: list[DecisionRecord] = field(default_factory=list)
    duplicates: Counter[str] = field(default_factory=Counter)  # by account
    late: Counter[str] = field(default_factory=Counter)
    deduplicated: Counter[str] = field(default_factory=Counter)  # held back by the ledger
    ledger: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.detector = Detector(self.rules)

    def apply(self, state: AccountState, event: Event) -> None:
        """One event through the detector, then the ledger, as the worker's Pipeline does."""
        outcome = self.detector.apply(state, event)
        if outcome.duplicate:
            self.duplicates[event.account_id] += 1
            return
        if outcome.late:
            self.late[event.account_id] += 1
        if outcome.signals:
            for signal in outcome.signals:
                if signal["signal_id"] in self.ledger:
                    self.deduplicated[event.account_id] += 1
                    continue
                self.ledger.add(signal["signal_id"])
                self.signals.append(signal)
        if outcome.decisions:
            day = int(event.timestamp // DAY)
            for decision in outcome.decisions:
                self.decisions.append(
                    DecisionRecord(
                        decision["decision_id"],
                        decision["account_id"],
                        decision["trigger"],
                        decision["signal"]["route"],
                        decision["reason"],
                        day,
                    )
                )

    def forget(self, accounts: set[str]) -> None:
        """Drop what these accounts led to, before they are replayed again."""
        dropped = [s for s in self.signals if s["account_id"] in accounts]
        self.ledger.difference_update(s["signal_id"] for s in dropped)
        self.signals = [s for s in self.signals if s["account_id"] not in accounts]
        self.decisions = [d for d in self.decisions if d.account_id not in accounts]
        for counter in (self.duplicates, self.late, self.deduplicated):
            for account in accounts:
                counter.pop(account, None)


@dataclass
class Replay:
    """The input as read, and each rules file's run over it."""

    path: str
    runs: list[Run]
    lines: int = 0
    events: int = 0
    skipped: list[Skipped] = field(default_factory=list)  # the first KEPT_SKIPS
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    activity: dict[str, set[int]] = field(default_factory=dict)  # account -> days with events
    reordered: int = 0  # accounts whose events were out of time order in the file

    @property
    def span(self) -> tuple[int, int] | None:
        """First and last UTC day with an event."""
        if not self.activity:
            return None
        return (
            min(min(days) for days in self.activity.values()),
            max(max(days) for days in self.activity.values()),
        )


Progress = Callable[[int, int, int], None]  # (bytes read, file size, events)


def _decoded(
    path: str,
    on_skip: Callable[[Skipped], None] | None,
    progress: Progress | None,
    totals: Replay | None,
) -> Iterator[Event]:
    """Valid events of the file in file order; each bad line or event goes to `on_skip`."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        read = events = line_no = 0
        for line_no, line in enumerate(file, 1):
            read += len(line)
            if progress is not None and not line_no & 0x1FFF:
                progress(read, size, events)
            raw = line.rstrip(b"\r\n")
            if not raw or raw.isspace():
                continue
            decoded = decode(raw)
            if decoded.rejections and on_skip is not None:
                for rejection in decoded.rejections:
                    on_skip(Skipped(line_no, rejection.index, rejection.reason, rejection.detail))
            events += len(decoded.events)
            yield from decoded.events
        if progress is not None:
            progress(read, size, events)
        if totals is not None:
            totals.lines, totals.events = line_no, events


def replay(
    path: str | Path,
    rulesets: Sequence[tuple[str, Rules]],
    on_skip: Callable[[Skipped], None] | None = None,
    progress: Progress | None = None,
) -> Replay:
    """Replay the events file once under each (label, rules), in event-time order."""
    result = Replay(str(path), [Run(label, rules) for label, rules in rulesets])
    runs = result.runs

    def skip(skipped: Skipped) -> None:
        result.skipped_by_reason[skipped.reason] += 1
        if len(result.skipped) < KEPT_SKIPS:
            result.skipped.append(skipped)
        if on_skip is not None:
            on_skip(skipped)

    clocks: dict[str, float] = {}  # account -> its latest event time replayed; inf: reordered
    states: dict[str, list[AccountState]] = {}
    activity = result.activity
    for event in _decoded(result.path, skip, progress, result):
        account, ts = event.account_id, event.timestamp
        day = int(ts // DAY)
        days = activity.get(account)
        if days is None:
            activity[account] = {day}
        else:
            days.add(day)
        clock = clocks.get(account)
        if clock is None:
            states[account] = [AccountState(account) for _ in runs]
        elif ts < clock:
            clocks[account] = float("inf")  # replayed sorted in the second pass
            continue
        clocks[account] = ts
        for run, state in zip(runs, states[account], strict=True):
            run.apply(state, event)

    reordered = {account for account, clock in clocks.items() if clock == float("inf")}
    if reordered:
        result.reordered = len(reordered)
        for run in runs:
            run.forget(reordered)
        held = [e for e in _decoded(result.path, None, None, None) if e.account_id in reordered]
        held.sort(key=lambda e: e.timestamp)  # stable: ties stay in file order
        fresh = {account: [AccountState(account) for _ in runs] for account in reordered}
        for event in held:
            for run, state in zip(runs, fresh[event.account_id], strict=True):
                run.apply(state, event)
    return result


def load_outcomes(
    path: str | Path, on_skip: Callable[[Skipped], None] | None = None
) -> list[Expansion]:
    """Read expansions, JSON lines {"account_id", "kind", "date"}; date YYYY-MM-DD or RFC 3339."""
    expansions = []
    with open(path, "rb") as file:
        for line_no, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("an outcome must be a JSON object")
                account, when = obj.get("account_id"), obj.get("date")
                if not isinstance(account, str) or not account:
                    raise ValueError("account_id: a non-empty string is required")
                if not isinstance(when, str):
                    raise ValueError("date: a YYYY-MM-DD string is required")
                kind = obj.get("kind", "expansion")
                expansions.append(Expansion(account, str(kind), _day_of_date(when)))
            except (orjson.JSONDecodeError, ValueError) as error:
                if on_skip is not None:
                    on_skip(Skipped(line_no, None, "outcome", str(error)[:200]))
    return expansions


def _day_of_date(text: str) -> int:
    try:
        if len(text) == 10:
            return date.fromisoformat(text).toordinal() - _EPOCH_ORDINAL
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"date: not a date: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"date: a time needs a UTC offset: {text[:40]!r}")
    return int(moment.timestamp() // DAY)


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_date(day: int) -> date:
    return date.fromordinal(day + _EPOCH_ORDINAL)


def quarter_of(day: int) -> str:
    moment = day_date(day)
    return f"{moment.year}Q{(moment.month - 1) // 3 + 1}"


def _quarter_days(quarter: str) -> tuple[int, int]:
    """First and last day of a quarter such as 2026Q1."""
    year, q = int(quarter[:4]), int(quarter[5])
    first = date(year, 3 * q - 2, 1)
    after = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
    return first.toordinal() - _EPOCH_ORDINAL, after.toordinal() - _EPOCH_ORDINAL - 1


def week_of(day: int) -> int:
    """The Monday starting the ISO week of `day` (day 0, 1970-01-01, was a Thursday)."""
    return day - (day + 3) % 7


def _signal_day(signal: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(signal["detected_at"]).timestamp() // DAY)


# -- measuring -----------------------------------------------------------------------------


@dataclass
class _Frame:
    """What every group's figures are measured against: the data's span and the truth."""

    window: int
    start: int
    end: int
    expansions: list[Expansion]  # within the span
    expansion_days: dict[str, list[int]]  # account -> sorted days
    eligible: dict[str, int]  # quarter -> accounts with events
    counted: list[str]  # quarters pooled into the fire rate
    weeks: list[int]
    weekly_eligible: dict[int, int]


def _frame(replay: Replay, expansions: list[Expansion], window: int) -> _Frame:
    span = replay.span or (0, -1)
    start, end = span
    inside = [e for e in expansions if start <= e.day <= end]
    days: dict[str, list[int]] = defaultdict(list)
    for expansion in inside:
        days[expansion.account_id].append(expansion.day)
    for account_days in days.values():
        account_days.sort()
    eligible: Counter[str] = Counter()
    weekly: Counter[int] = Counter()
    for active in replay.activity.values():
        eligible.update({quarter_of(day) for day in active})
        weekly.update({week_of(day) for day in active})
    quarters = sorted(eligible)
    counted = []
    for quarter in quarters:
        first, last = _quarter_days(quarter)
        covered = min(last, end) - max(first, start) + 1
        if covered * 2 >= last - first + 1:
            counted.append(quarter)
    weeks = list(range(week_of(start), end + 1, 7)) if replay.activity else []
    return _Frame(
        window, start, end, inside, dict(days), dict(eligible), counted or quarters, weeks, weekly
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _figures(
    frame: _Frame,
    signals: list[tuple[str, int]],
    decisions: list[DecisionRecord],
) -> dict[str, Any]:
    """Fires, fire rate, coverage, false positives, lead time and decisions of one group."""
    window = frame.window
    by_account: dict[str, list[int]] = defaultdict(list)
    fired_in: dict[str, set[str]] = defaultdict(set)  # quarter -> accounts
    fired_weekly: dict[int, set[str]] = defaultdict(set)
    for account, day in signals:
        by_account[account].append(day)
        fired_in[quarter_of(day)].add(account)
        fired_weekly[week_of(day)].add(account)
    for days in by_account.values():
        days.sort()

    covered_by_kind: Counter[str] = Counter()
    outcomes_by_kind: Counter[str] = Counter()
    leads = []
    for expansion in frame.expansions:
        outcomes_by_kind[expansion.kind] += 1
        days = by_account.get(expansion.account_id, [])
        first = bisect.bisect_left(days, expansion.day - window)
        if first < len(days) and days[first] <= expansion.day:
            covered_by_kind[expansion.kind] += 1
            leads.append(expansion.day - days[first])

    decided = false_positives = 0
    for account, day in signals:
        if day + window > frame.end:
            continue  # open: its window is not over within the data
        decided += 1
        later = frame.expansion_days.get(account, [])
        first = bisect.bisect_left(later, day)
        if first == len(later) or later[first] > day + window:
            false_positives += 1

    by_quarter = {
        quarter: _share(len(fired_in.get(quarter, ())), eligible)
        for quarter, eligible in frame.eligible.items()
    }
    pooled = _share(
        sum(len(fired_in.get(q, ())) for q in frame.counted),
        sum(frame.eligible[q] for q in frame.counted),
    )
    reasons = Counter(d.reason for d in decisions)
    outcomes = len(frame.expansions)
    return {
        "fires": len(signals),
        "accounts": len(by_account),
        "fire_rate": pooled,
        "fire_rate_by_quarter": by_quarter,
        "fire_rate_by_week": [
            _share(len(fired_weekly.get(week, ())), frame.weekly_eligible.get(week, 0))
            for week in frame.weeks
        ],
        "coverage": _share(sum(covered_by_kind.values()), outcomes),
        "covered": sum(covered_by_kind.values()),
        "outcomes": outcomes,
        "coverage_by_kind": {
            kind: _share(covered_by_kind[kind], n) for kind, n in sorted(outcomes_by_kind.items())
        },
        "false_positive_rate": _share(false_positives, decided),
        "false_positives": false_positives,
        "decided": decided,
        "open": len(signals) - decided,
        "median_lead_days": statistics.median(leads) if leads else None,
        "lead_days": sorted(leads),
        "decisions": {
            group: sum(reasons[r] for r in members) for group, members in REASON_GROUPS.items()
        },
        "decisions_by_reason": dict(sorted(reasons.items())),
    }


def hints(figures: dict[str, Any]) -> list[str]:
    """Where a trigger misses the bar for automating it; empty when it meets every part."""
    out = []
    coverage, fpr, rate = (
        figures["coverage"],
        figures["false_positive_rate"],
        figures["fire_rate"],
    )
    low, high = FIRE_RATE_RANGE
    if coverage is None:
        out.append("cover?")
    elif coverage < COVERAGE_MIN:
        out.append(f"cover<{COVERAGE_MIN:.0%}")
    if fpr is None:
        out.append("FPR?")
    elif fpr >= FPR_MAX:
        out.append(f"FPR>={FPR_MAX:.0%}")
    if rate is None:
        out.append("fires?")
    elif rate < low:
        out.append(f"fires<{low:.0%}")
    elif rate > high:
        out.append(f"fires>{high:.0%}")
    return out


def measure(
    replay: Replay, expansions: list[Expansion] | None, window: int = WINDOW_DAYS
) -> dict[str, Any]:
    """The results as plain data (what --json prints and the HTML report draws)."""
    frame = _frame(replay, expansions or [], window)
    span = replay.span
    all_expansions = expansions or []
    runs = []
    for run in replay.runs:
        by_trigger: dict[str, list[tuple[str, int]]] = defaultdict(list)
        by_route: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for signal in run.signals:
            fired = (signal["account_id"], _signal_day(signal))
            by_trigger[signal["trigger"]].append(fired)
            by_route[signal["route"]].append(fired)
        decisions_by_trigger: dict[str, list[DecisionRecord]] = defaultdict(list)
        decisions_by_route: dict[str, list[DecisionRecord]] = defaultdict(list)
        for decision in run.decisions:
            decisions_by_trigger[decision.trigger].append(decision)
            decisions_by_route[decision.route].append(decision)
        triggers = {}
        for trigger in TRIGGERS:
            figures = _figures(frame, by_trigger[trigger], decisions_by_trigger[trigger])
            figures["hints"] = hints(figures)
            triggers[trigger] = figures
        routes = {
            route: _figures(frame, by_route[route], decisions_by_route[route]) for route in ROUTES
        }
        every = [(s["account_id"], _signal_day(s)) for s in run.signals]
        runs.append(
            {
                "label": run.label,
                "rules_digest": run.rules.digest,
                "signals": len(run.signals),
                "decisions": len(run.decisions),
                "duplicate_events": sum(run.duplicates.values()),
                "late_events": sum(run.late.values()),
                "deduplicated_signals": sum(run.deduplicated.values()),
                "any": _figures(frame, every, run.decisions),
                "triggers": triggers,
                "routes": routes,
            }
        )
    return {
        "events_file": replay.path,
        "lines": replay.lines,
        "events": replay.events,
        "accounts": len(replay.activity),
        "first_day": None if span is None else day_date(span[0]).isoformat(),
        "last_day": None if span is None else day_date(span[1]).isoformat(),
        "skipped_lines": sum(replay.skipped_by_reason.values()),
        "skipped_by_reason": dict(replay.skipped_by_reason.most_common()),
        "skipped": [
            {"line": s.line, "index": s.index, "reason": s.reason, "detail": s.detail}
            for s in replay.skipped
        ],
        "reordered_accounts": replay.reordered,
        "outcomes": len(all_expansions),
        "outcomes_in_span": len(frame.expansions),
        "outcomes_by_kind": dict(Counter(e.kind for e in frame.expansions).most_common()),
        "outcomes_without_events": sum(
            1 for e in frame.expansions if e.account_id not in replay.activity
        ),
        "window_days": window,
        "thresholds": {
            "coverage_min": COVERAGE_MIN,
            "false_positive_rate_max": FPR_MAX,
            "fire_rate_range": list(FIRE_RATE_RANGE),
        },
        "quarters": [
            {
                "quarter": quarter,
                "eligible_accounts": frame.eligible[quarter],
                "pooled": quarter in frame.counted,
            }
            for quarter in sorted(frame.eligible)
        ],
        "weeks": [day_date(week).isoformat() for week in frame.weeks],
        "weekly_eligible": [frame.weekly_eligible.get(week, 0) for week in frame.weeks],
        "runs": runs,
    }


# -- the terminal table ----------------------------------------------------------------------


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
        f"hint    the bar for automating a trigger: cover >= {COVERAGE_MIN:.0%}, "
        f"FPR < {FPR_MAX:.0%}, fire/q {low:.0%}-{high:.0%}",
    ]
    return "\n".join(out)


# -- the command -------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """`python -m streams backtest EVENTS --outcomes OUTCOMES [--rules FILE ...]`."""
    parser = argparse.ArgumentParser(
        prog="python -m streams backtest",
        description="Replay a JSONL file of events through the detector's decisions and "
        "report, per trigger and per route, fires, fire rate, coverage of expansions, false "
        "positives, lead time and decisions; several rules files side by side.",
    )
    parser.add_argument("events", help="events file: JSON lines, each an event or a batch")
    parser.add_argument("--outcomes", help="expansions file: JSON lines {account_id, kind, date}")
    parser.add_argument(
        "--rules",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="rules file(s) to compare (default: RULES_FILE, config/rules.yaml)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=WINDOW_DAYS,
        metavar="DAYS",
        help=f"days between a signal and the expansion it announces (default {WINDOW_DAYS})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be at least 1 day")
    if not args.rules:
        from streams.settings import Settings

        default = Settings().rules_file
        shown_as = os.path.relpath(default) if default.is_relative_to(Path.cwd()) else default
        args.rules = [str(shown_as)]
    rulesets = []
    for path in args.rules:
        try:
            rulesets.append((path, load(path)))
        except RulesError as error:
            print(f"error: bad rules file: {error}", file=sys.stderr)
            return 2

    from streams.simulate import Progress

    bar = Progress("backtest", 1)
    shown = 0

    def report_skip(path: str) -> Callable[[Skipped], None]:
        def report(skipped: Skipped) -> None:
            nonlocal shown
            shown += 1
            if shown <= SHOWN_SKIPS:
                bar.message(f"skipped {skipped.describe(path)}")
            elif shown == SHOWN_SKIPS + 1:
                bar.message("skipped: further skipped lines are counted, not shown")

        return report

    started = time.monotonic()

    def progress(read: int, size: int, events: int) -> None:
        bar.total = size
        rate = events / max(time.monotonic() - started, 1e-9)
        bar.update(read, f"{events:,} events, {rate:,.0f} events/s")

    try:
        expansions = None
        if args.outcomes:
            expansions = load_outcomes(args.outcomes, report_skip(args.outcomes))
        result = replay(args.events, rulesets, report_skip(args.events), progress)
    except OSError as error:
        bar.close()
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        return 130
    bar.close()
    elapsed = time.monotonic() - started
    results = measure(result, expansions, args.window)
    results["seconds"] = round(elapsed, 3)
    print(
        f"backtest: {result.events:,} events in {elapsed:.1f} s "
        f"({result.events / max(elapsed, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    if args.html:
        from streams.report import render

        Path(args.html).write_text(render(results), encoding="utf-8")
        print(f"backtest: report written to {args.html}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_text(results))
    return 0

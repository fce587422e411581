"""The backtest's figures: fires, fire rate, coverage, false positives and lead time."""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from streams.backtest.replay import DecisionRecord, Expansion, Replay
from streams.clock import day_of
from streams.domain import gates
from streams.rules import TRIGGERS

WINDOW_DAYS = 90
ROUTES = ("in_app", "csm", "sales")
STAGES = ("opportunity", "won", "lost", "rejected")
# The bar for automating a trigger.
COVERAGE_MIN = 0.40
FPR_MAX = 0.50
FIRE_RATE_RANGE = (0.05, 0.15)
REASON_GROUPS = {
    "gated": gates.REASONS,
    "cooldown": ("cooldown",),
    "collision": ("collision",),
}


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
    return day_of(datetime.fromisoformat(signal["detected_at"]).timestamp())


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


def answered(fires: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the outcomes in the events said of one group's signals (contract section 10).

    Each signal is answered at most once per stage, so records count signals:
    trigger-to-opportunity = opportunity / published signals; opportunity-to-close = won /
    (won + lost); false positive rate = rejected / (won + lost + rejected); cycle time =
    the median days from a signal to its win.
    """
    stages = Counter(record["stage"] for record in records)
    won, lost, rejected = stages["won"], stages["lost"], stages["rejected"]
    cycle = [record["days_to_outcome"] for record in records if record["stage"] == "won"]
    return {
        "stages": {stage: stages[stage] for stage in STAGES},
        "self_serve": sum(1 for record in records if record["via"] == "self_serve"),
        "opportunity_rate": _share(stages["opportunity"], fires),
        "close_rate": _share(won, won + lost),
        "false_positive_rate": _share(rejected, won + lost + rejected),
        "median_cycle_days": round(statistics.median(cycle), 1) if cycle else None,
        "won_mrr": round(
            sum(record["expansion_mrr"] or 0.0 for record in records if record["stage"] == "won"), 2
        ),
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
    """The results as plain data (what --json prints and the HTML report draws).

    Definitions (each measured per trigger, per route, and for any signal; W = --window, 90 days):

    - eligible accounts of a calendar quarter (UTC): accounts with at least one valid event in it;
    - fire rate: accounts with a published signal in the quarter / eligible accounts, pooled over
      the quarters the data covers at least half of (all quarters if it covers none that much);
    - coverage: expansions with a published signal on the same account on their date or in the W
      days before it / expansions dated within the events' time span;
    - false positive rate: signals with no expansion on the account on their date or in the W days
      after / signals whose W days lie inside the data. Signals less than W days before the last
      event are "open": their outcome is not known yet, and they are left out of the rate;
    - lead time: days from the first signal in the W days before a covered expansion to it;
    - answers: what the events' own expansion_outcome events and self-serve conversions said
      of the signals (`answered`), beside the figures measured against the expansions file.
    """
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
        answers_by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for record in run.outcomes:
            answers_by["triggers", record["trigger"]].append(record)
            answers_by["routes", record["route"]].append(record)
        decisions_by_trigger: dict[str, list[DecisionRecord]] = defaultdict(list)
        decisions_by_route: dict[str, list[DecisionRecord]] = defaultdict(list)
        for decision in run.decisions:
            decisions_by_trigger[decision.trigger].append(decision)
            decisions_by_route[decision.route].append(decision)
        triggers = {}
        for trigger in TRIGGERS:
            figures = _figures(frame, by_trigger[trigger], decisions_by_trigger[trigger])
            figures["hints"] = hints(figures)
            figures["answers"] = answered(figures["fires"], answers_by["triggers", trigger])
            triggers[trigger] = figures
        routes = {}
        for route in ROUTES:
            figures = _figures(frame, by_route[route], decisions_by_route[route])
            figures["answers"] = answered(figures["fires"], answers_by["routes", route])
            routes[route] = figures
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
                "any": {
                    **_figures(frame, every, run.decisions),
                    "answers": answered(len(every), run.outcomes),
                },
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

"""Signals in words for people: one line per signal, and summaries by trigger and route."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from streams.domain.triggers import CATALOG


def why(signal: dict[str, Any]) -> str:
    """The evidence behind a signal, as a short sentence."""
    return CATALOG[signal["trigger"]].why(signal["evidence"])


def line(signal: dict[str, Any]) -> str:
    """One readable line: when, who, what, where it goes, and why."""
    co = f"  [+{', '.join(signal['co_signals'])}]" if signal["co_signals"] else ""
    return (
        f"{signal['detected_at'][:10]}  {signal['account_id']:<14} {signal['segment']:<10} "
        f"{signal['trigger']:<21} {signal['level']:<4g} -> {signal['route']:<6} "
        f"score {signal['score']:>3}  +${signal['estimated_expansion_mrr']:,.0f}/mo  "
        f"{why(signal)}{co}"
    )


def table(signals: Iterable[dict[str, Any]]) -> str:
    """Signals counted by trigger (rows) and route (columns)."""
    counts = Counter((s["trigger"], s["route"]) for s in signals)
    routes = ["in_app", "csm", "sales"]
    triggers = sorted({t for t, _ in counts}, key=lambda t: -sum(counts[t, r] for r in routes))
    rows = [f"{'trigger':<22}" + "".join(f"{r:>8}" for r in routes) + f"{'total':>8}"]
    for trigger in triggers:
        cells = [counts[trigger, r] for r in routes]
        rows.append(f"{trigger:<22}" + "".join(f"{n:>8}" for n in cells) + f"{sum(cells):>8}")
    totals = [sum(counts[t, r] for t in triggers) for r in routes]
    rows.append(f"{'total':<22}" + "".join(f"{n:>8}" for n in totals) + f"{sum(totals):>8}")
    return "\n".join(rows)

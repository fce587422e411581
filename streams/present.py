"""Signals in words for people: one line per signal, and summaries by trigger and route."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


def why(signal: dict[str, Any]) -> str:
    """The evidence behind a signal, as a short sentence."""
    e = signal["evidence"]
    trigger = signal["trigger"]
    if trigger == "usage_ceiling":
        if e.get("basis") == "projection":
            return (
                f"{e['meter']} projected to reach its monthly limit in "
                f"{e['projected_days_to_limit']:g} days ({e['ratio']:.0%} used)"
            )
        used = f"{e['usage']:,.0f} / {e['limit']:,.0f}"
        return f"{e['meter']} at {e['ratio']:.0%} of its monthly limit ({used})"
    if trigger == "seat_saturation":
        held = f" for {e['sustained_days']:.0f} days" if e["sustained_days"] >= 1 else ""
        return f"{e['seats_in_use']} of {e['seat_limit']} seats in use ({e['ratio']:.0%}){held}"
    if trigger == "gated_feature_demand":
        if e.get("basis") == "distinct_features":
            return (
                f"{e['distinct_features']} gated features hit in {e['distinct_window_days']} days: "
                + ", ".join(e["features"])
            )
        return (
            f"{e['gate_hits']} gate hits by {e['gate_users']} users in {e['hits_window_days']} days"
        )
    if trigger == "invite_surge":
        return f"{e['invites']} invites sent in {e['window_days']} days"
    if trigger == "new_department":
        return (
            f"new department {e['department']!r}: {e['active_users']} active users "
            f"(first seen {e['first_seen'][:10]})"
        )
    if trigger == "power_user_emergence":
        return (
            f"user {e['user_id']} active {e['active_days']} of {e['window_days']} days "
            f"(account mean {e['mean_active_days']:g})"
        )
    return f"external signal: {e.get('kind')}"


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

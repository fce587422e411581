"""An account's row of the readiness scorecard (contract section 11), and the scorecard's order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.clock import format_time
from streams.domain.state import AccountState
from streams.rules import Rules
from streams.signals import scorecard_record

# Triggers published or decided in this many days (whole UTC days, up to now's) are active.
ACTIVE_DAYS = 14
MOTIONS = {"in_app": "self_serve", "csm": "csm_led", "sales": "sales_led"}


def scorecard_row(state: AccountState, rules: Rules) -> dict[str, Any]:
    """How ready the account is to expand, what is firing, and what to do next."""
    assert state.now is not None
    segment_rules = rules.for_segment(state.segment)
    criteria = {gate.name: gate.status(state, rule) for gate, rule in segment_rules.gate_checks}
    statuses = list(criteria.values())
    met, unmet = statuses.count("met"), statuses.count("unmet")
    if state.activated_at is None:
        activation = "not_activated"
    else:
        activation = "activating" if criteria["activation"] == "unmet" else "activated"
    first_day = state.today - ACTIVE_DAYS + 1
    active = sorted(
        (
            trigger
            for trigger, memory in state.triggers.items()
            if memory.decided_day is not None and memory.decided_day >= first_day
        ),
        key=segment_rules.order.index,
    )
    primary = None if state.primary is None else state.primary.signal
    if unmet:
        motion = "not_ready"
    else:
        motion = "none" if primary is None else MOTIONS[primary["route"]]
    acv = 0.0 if primary is None else round(12 * primary["estimated_expansion_mrr"], 2)
    return scorecard_record(
        account_id=state.account_id,
        segment=state.segment or rules.default_segment,
        health_score=state.health_score,
        activation_status=activation,
        expansion_readiness=round(100 * met / (met + unmet)) if met + unmet else 0,
        criteria=criteria,
        active_triggers=active,
        recommended_motion=motion,
        estimated_expansion_acv=acv,
        updated_at=format_time(state.now),
    )


def rank_key(row: dict[str, Any]) -> tuple[int, float, str]:
    """The scorecard's order: readiness, then ACV, both descending, then account_id."""
    return -row["expansion_readiness"], -row["estimated_expansion_acv"], row["account_id"]


def ranked(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=rank_key)

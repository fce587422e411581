"""One event in, decisions out: dedup, lateness, gates, cooldown, collision, routing and score."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from streams.domain.state import DAY, AccountState, event_key
from streams.domain.triggers import Fired, evaluate
from streams.events import Event, format_time
from streams.rules import EXPANSION_TYPE, Rules, SegmentRules
from streams.signals import signal_id

HOUR = 3_600.0


@dataclass(slots=True)
class Outcome:
    """What one event led to. `serving` is the account's primary signal when it changed."""

    signals: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    serving: dict[str, Any] | None = None
    duplicate: bool = False
    late: bool = False


def route_and_score(
    rules: SegmentRules, trigger: str, level: float, mrr: float | None, signal_stack: int
) -> tuple[str, float, int]:
    """Route, estimated expansion MRR and score of a signal (contract section 8; README)."""
    routing = rules.routing
    share = getattr(routing.expansion_share, EXPANSION_TYPE[trigger])
    estimate = round((mrr or 0.0) * share, 2)
    if signal_stack >= routing.sales_min_signal_stack or estimate >= routing.sales_min_estimate:
        route = "sales"
    elif estimate >= routing.csm_min_estimate:
        route = "csm"
    else:
        route = "in_app"
    weights = rules.score
    last_rank = len(rules.priority) - 1
    priority_share = (last_rank - rules.rank(trigger)) / last_rank if last_rank else 1.0
    raw = (
        weights.level * min(level, 1.0)
        + weights.priority * priority_share
        + weights.stack * (signal_stack - 1)
    )
    return route, estimate, max(0, min(100, round(raw)))


class Detector:
    """The detector's decisions for one account at a time; pure, the same live and in backtest."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules

    def apply(self, state: AccountState, event: Event) -> Outcome:
        """Fold one event into the account's state and decide what it leads to."""
        rules = self.rules.for_segment(state.segment)
        ts = event.timestamp
        key = event_key(event.event_id)
        seen_at = state.seen_at(key)
        dedup_window = rules.dedup_window_hours * HOUR
        if seen_at is not None and abs(ts - seen_at) <= dedup_window:
            return Outcome(duplicate=True)
        previous_now = state.now
        state.apply(event, rules.triggers.seat_saturation.levels[0])
        state.remember(key, ts, dedup_window)
        if previous_now is not None and ts < previous_now - rules.late_allowance_hours * HOUR:
            return Outcome(late=True)
        # the event may have changed the segment, and with it the rules
        rules = self.rules.for_segment(state.segment)
        return self._decide(state, event, rules, evaluate(state, event, rules))

    def _decide(
        self, state: AccountState, event: Event, rules: SegmentRules, fired: list[Fired]
    ) -> Outcome:
        outcome = Outcome()
        now = state.now
        assert now is not None
        fired_names = {f.trigger for f in fired}
        for name, memory in state.triggers.items():
            if name not in fired_names:
                memory[2] = []  # the condition ended: a later gate or suppression is news again
        if not fired:
            return outcome
        gate = self._gate(state, rules)
        candidates: list[Fired] = []
        for trigger in fired:
            memory = state.triggers.setdefault(trigger.trigger, [None, None, []])
            published_level, published_at = memory[0], memory[1]
            if gate is not None:
                self._suppress(outcome, state, event, rules, trigger, gate[0], gate[1])
            elif (
                published_at is not None
                and now - published_at < rules.cooldown_days * DAY
                and trigger.level <= published_level
            ):
                detail = {
                    "published_level": published_level,
                    "published_at": format_time(published_at),
                    "cooldown_days": rules.cooldown_days,
                }
                self._suppress(outcome, state, event, rules, trigger, "cooldown", detail)
            else:
                candidates.append(trigger)
        if candidates:
            self._resolve_collisions(outcome, state, event, rules, candidates)
        return outcome

    def _gate(self, state: AccountState, rules: SegmentRules) -> tuple[str, dict[str, Any]] | None:
        """The first gate the account fails now (contract section 6), with its numbers."""
        gates = rules.gates
        now = state.now
        assert now is not None
        if state.activated_at is None or now - state.activated_at < gates.activation_days * DAY:
            return "gated_not_activated", {
                "activated_at": None
                if state.activated_at is None
                else format_time(state.activated_at),
                "activation_days": gates.activation_days,
            }
        if state.health_score is not None and state.health_score < gates.min_health_score:
            return "gated_health", {
                "health_score": state.health_score,
                "min_health_score": gates.min_health_score,
            }
        window = gates.churn_window_days
        today = state.today
        recent = state.active_users(today - window + 1, today)
        before = state.active_users(today - 2 * window + 1, today - window)
        if before and recent < gates.churn_ratio * before:
            return "gated_churn_risk", {
                "active_users_recent": recent,
                "active_users_before": before,
                "window_days": window,
                "churn_ratio": gates.churn_ratio,
            }
        return None

    def _signal(
        self,
        state: AccountState,
        event: Event,
        rules: SegmentRules,
        fired: Fired,
        co_signals: list[str],
        supersedes: str | None,
    ) -> dict[str, Any]:
        stack = 1 + len(co_signals)
        route, estimate, score = route_and_score(
            rules, fired.trigger, fired.level, state.mrr, stack
        )
        return {
            "schema_version": 1,
            "signal_id": signal_id(state.account_id, fired.trigger, fired.level, event.event_id),
            "account_id": state.account_id,
            "trigger": fired.trigger,
            "expansion_type": EXPANSION_TYPE[fired.trigger],
            "level": fired.level,
            "score": score,
            "route": route,
            "segment": state.segment or self.rules.default_segment,
            "estimated_expansion_mrr": estimate,
            "signal_stack": stack,
            "co_signals": co_signals,
            "supersedes": supersedes,
            "evidence": fired.evidence,
            "detected_at": format_time(event.timestamp),
            "emitted_at": None,
            "source_event_id": event.event_id,
        }

    def _suppress(
        self,
        outcome: Outcome,
        state: AccountState,
        event: Event,
        rules: SegmentRules,
        fired: Fired,
        reason: str,
        detail: dict[str, Any],
    ) -> None:
        """Log a fired trigger that is not published, once per (trigger, level, reason)."""
        memory = state.triggers.setdefault(fired.trigger, [None, None, []])
        memo = f"{fired.level:g}|{reason}"
        if memo in memory[2]:
            return
        memory[2].append(memo)
        would_be = self._signal(state, event, rules, fired, [], None)
        outcome.decisions.append(
            {
                "schema_version": 1,
                "decision_id": hashlib.sha256(
                    f"{would_be['signal_id']}\x1f{reason}".encode()
                ).hexdigest()[:32],
                "account_id": state.account_id,
                "trigger": fired.trigger,
                "level": fired.level,
                "reason": reason,
                "detail": detail,
                "detected_at": would_be["detected_at"],
                "source_event_id": event.event_id,
                "signal": would_be,
            }
        )

    def _resolve_collisions(
        self,
        outcome: Outcome,
        state: AccountState,
        event: Event,
        rules: SegmentRules,
        candidates: list[Fired],
    ) -> None:
        """At most one primary per collision window; the others join it as co-signals."""
        now = state.now
        assert now is not None
        if (
            state.primary is not None
            and now - state.primary[1] >= rules.collision_window_days * DAY
        ):
            state.primary = None
        first = candidates[0]
        current = state.primary[0] if state.primary is not None else None
        if current is None:
            carried: list[str] = []
            self._publish(outcome, state, event, rules, first, carried, candidates[1:], None)
        elif (first.trigger == current["trigger"] and first.level > current["level"]) or (
            rules.rank(first.trigger) < rules.rank(current["trigger"])
        ):
            carried = [*current["co_signals"], current["trigger"]]
            self._publish(
                outcome, state, event, rules, first, carried, candidates[1:], current["signal_id"]
            )
        else:
            self._join_primary(outcome, state, event, rules, candidates)

    def _publish(
        self,
        outcome: Outcome,
        state: AccountState,
        event: Event,
        rules: SegmentRules,
        fired: Fired,
        carried: list[str],
        colliding: list[Fired],
        supersedes: str | None,
    ) -> None:
        """Publish `fired` as the new primary; `colliding` triggers join it as co-signals."""
        co_signals = sorted(
            {*carried, *(f.trigger for f in colliding)} - {fired.trigger}, key=rules.rank
        )
        signal = self._signal(state, event, rules, fired, co_signals, supersedes)
        state.primary = [signal, state.now]
        memory = state.triggers.setdefault(fired.trigger, [None, None, []])
        memory[0], memory[1], memory[2] = fired.level, state.now, []
        outcome.signals.append(signal)
        outcome.serving = signal
        for other in colliding:
            detail = {"primary_signal_id": signal["signal_id"]}
            self._suppress(outcome, state, event, rules, other, "collision", detail)

    def _join_primary(
        self,
        outcome: Outcome,
        state: AccountState,
        event: Event,
        rules: SegmentRules,
        colliding: list[Fired],
    ) -> None:
        """Add triggers of lower or equal priority to the active primary's co-signals."""
        assert state.primary is not None
        current = state.primary[0]
        co_signals = sorted(
            {*current["co_signals"], *(f.trigger for f in colliding)} - {current["trigger"]},
            key=rules.rank,
        )
        if co_signals != current["co_signals"]:
            stack = 1 + len(co_signals)
            route, estimate, score = route_and_score(
                rules, current["trigger"], current["level"], state.mrr, stack
            )
            current = {**current, "co_signals": co_signals, "signal_stack": stack}
            current.update(route=route, estimated_expansion_mrr=estimate, score=score)
            state.primary[0] = current
            outcome.serving = current
        for other in colliding:
            detail = {"primary_signal_id": current["signal_id"]}
            self._suppress(outcome, state, event, rules, other, "collision", detail)

"""One event in, decisions out: dedup, lateness, gates, cooldown, collision, routing and score."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from streams.clock import DAY, HOUR, format_time
from streams.domain.gates import failed_gate
from streams.domain.state import AccountState, Primary, TriggerMemory, event_key
from streams.domain.triggers import Fired, evaluate
from streams.events import Event
from streams.rules import Rules, SegmentRules
from streams.signals import decision_record, signal_id, signal_record


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
    share = getattr(routing.expansion_share, rules.expansion_type(trigger))
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
        fired = evaluate(state, event, rules)
        fired_names = {f.trigger for f in fired}
        for name, memory in state.triggers.items():
            if memory.logged and name not in fired_names:
                # the condition ended: a later gate or suppression is news again
                memory.logged = []
        if not fired:
            return Outcome()
        return _Step(state, event, rules, self.rules.default_segment).decide(fired)


@dataclass(slots=True)
class _Step:
    """The decisions one event leads to, for its account, under the rules in force."""

    state: AccountState
    event: Event
    rules: SegmentRules
    default_segment: str
    outcome: Outcome = field(default_factory=Outcome)

    def decide(self, fired: list[Fired]) -> Outcome:
        """Gate, then cool down, then resolve collisions among what is left."""
        state, now = self.state, self.state.now
        assert now is not None
        gate = failed_gate(state, self.rules)
        candidates: list[Fired] = []
        for trigger in fired:
            if gate is not None:
                self.suppress(trigger, *gate)
            elif (cooldown := self.cooldown(trigger, now)) is not None:
                self.suppress(trigger, "cooldown", cooldown)
            else:
                candidates.append(trigger)
        if candidates:
            self.resolve_collisions(candidates)
        return self.outcome

    def cooldown(self, fired: Fired, now: float) -> dict[str, Any] | None:
        """The cooldown `fired` is in, if it was published lately at this level or above."""
        memory = self.state.triggers.get(fired.trigger)
        if memory is None or memory.level is None or memory.published_at is None:
            return None
        if (
            now - memory.published_at >= self.rules.cooldown_days * DAY
            or fired.level > memory.level
        ):
            return None
        return {
            "published_level": memory.level,
            "published_at": format_time(memory.published_at),
            "cooldown_days": self.rules.cooldown_days,
        }

    def resolve_collisions(self, candidates: list[Fired]) -> None:
        """At most one primary per collision window; the others join it as co-signals."""
        state, rules = self.state, self.rules
        assert state.now is not None
        window = rules.collision_window_days * DAY
        if state.primary is not None and state.now - state.primary.at >= window:
            state.primary = None
        first, rest = candidates[0], candidates[1:]
        if state.primary is None:
            self.publish(first, [], rest, supersedes=None)
            return
        current = state.primary.signal
        rises = first.trigger == current["trigger"] and first.level > current["level"]
        if rises or rules.rank(first.trigger) < rules.rank(current["trigger"]):
            carried = [*current["co_signals"], current["trigger"]]
            self.publish(first, carried, rest, supersedes=current["signal_id"])
        else:
            self.join_primary(candidates)

    def publish(
        self, fired: Fired, carried: list[str], colliding: list[Fired], supersedes: str | None
    ) -> None:
        """Publish `fired` as the new primary; `colliding` triggers join it as co-signals."""
        co_signals = [*carried, *(f.trigger for f in colliding)]
        signal = self.stacked(self.signal(fired, supersedes), co_signals)
        assert self.state.now is not None
        self.state.primary = Primary(signal, self.state.now)
        self.state.triggers[fired.trigger] = TriggerMemory(fired.level, self.state.now)
        self.outcome.signals.append(signal)
        self.outcome.serving = signal
        self.collide(colliding, signal["signal_id"])

    def join_primary(self, colliding: list[Fired]) -> None:
        """Add triggers of lower or equal priority to the active primary's co-signals."""
        assert self.state.primary is not None
        current = self.state.primary.signal
        joined = self.stacked(current, [*current["co_signals"], *(f.trigger for f in colliding)])
        if joined["co_signals"] != current["co_signals"]:
            self.state.primary.signal = self.outcome.serving = joined
        self.collide(colliding, current["signal_id"])

    def collide(self, colliding: list[Fired], primary_id: str) -> None:
        for fired in colliding:
            self.suppress(fired, "collision", {"primary_signal_id": primary_id})

    def stacked(self, signal: dict[str, Any], co_signals: list[str]) -> dict[str, Any]:
        """`signal` with these co-signals, and the stack, route and score that follow."""
        rules = self.rules
        co = sorted(set(co_signals) - {signal["trigger"]}, key=rules.rank)
        stack = 1 + len(co)
        route, estimate, score = route_and_score(
            rules, signal["trigger"], signal["level"], self.state.mrr, stack
        )
        return {
            **signal,
            "co_signals": co,
            "signal_stack": stack,
            "route": route,
            "estimated_expansion_mrr": estimate,
            "score": score,
        }

    def signal(self, fired: Fired, supersedes: str | None) -> dict[str, Any]:
        """The signal `fired` makes on its own (no co-signals yet)."""
        state, event, rules = self.state, self.event, self.rules
        route, estimate, score = route_and_score(rules, fired.trigger, fired.level, state.mrr, 1)
        return signal_record(
            signal_id=signal_id(state.account_id, fired.trigger, fired.level, event.event_id),
            account_id=state.account_id,
            trigger=fired.trigger,
            expansion_type=rules.expansion_type(fired.trigger),
            level=fired.level,
            score=score,
            route=route,
            segment=state.segment or self.default_segment,
            estimated_expansion_mrr=estimate,
            signal_stack=1,
            co_signals=[],
            supersedes=supersedes,
            evidence=fired.evidence,
            detected_at=format_time(event.timestamp),
            emitted_at=None,
            source_event_id=event.event_id,
        )

    def suppress(self, fired: Fired, reason: str, detail: dict[str, Any]) -> None:
        """Log a fired trigger that is not published, once per (trigger, level, reason)."""
        memory = self.state.triggers.get(fired.trigger)
        if memory is None:
            memory = self.state.triggers[fired.trigger] = TriggerMemory()
        logged = f"{fired.level:g}|{reason}"
        if logged in memory.logged:
            return
        memory.logged.append(logged)
        would_be = self.signal(fired, None)
        decision_id = hashlib.sha256(f"{would_be['signal_id']}\x1f{reason}".encode())
        self.outcome.decisions.append(
            decision_record(
                decision_id=decision_id.hexdigest()[:32],
                account_id=self.state.account_id,
                trigger=fired.trigger,
                level=fired.level,
                reason=reason,
                detail=detail,
                detected_at=would_be["detected_at"],
                source_event_id=self.event.event_id,
                signal=would_be,
            )
        )

"""One event in, decisions out: dedup, lateness, gates, cooldown, collision, routing and score."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.clock import DAY, HOUR, format_time
from streams.domain import outcomes
from streams.domain.gates import failed_gate
from streams.domain.outcomes import Answer
from streams.domain.state import AccountState, Primary, Published, TriggerMemory, event_key
from streams.domain.triggers import ROUTES, STALLED_PQL, Fired, evaluate
from streams.events import AccountUpdated, Event, ExpansionOutcome
from streams.rules import Rules, SegmentRules
from streams.signals import decision_record, signal_id, signal_record

# The account's context on a signal counts active users and departments over this window.
CONTEXT_DAYS = 30


@dataclass(slots=True)
class Outcome:
    """What one event led to. `serving` is the account's primary signal when it changed;
    `answers` are the published signals an outcome or a conversion answered."""

    signals: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    serving: dict[str, Any] | None = None
    answers: list[Answer] = field(default_factory=list)
    unmatched: bool = False  # an expansion_outcome that matched no signal
    duplicate: bool = False
    late: bool = False


# The outcome of an event that led to nothing, and of a duplicate: shared (a new one per event
# cost about half a microsecond), so never changed; the detector makes a new one to fill.
NOTHING = Outcome()
DUPLICATE = Outcome(duplicate=True)


def ranked_as(trigger: str, level: float, evidence: dict[str, Any]) -> tuple[str, float]:
    """The trigger and level a signal ranks as: stalled_pql as the signal it escalated."""
    if trigger == STALLED_PQL:
        return evidence["stalled_trigger"], evidence["stalled_level"]
    return trigger, level


def expansion_type(rules: SegmentRules, trigger: str, evidence: dict[str, Any]) -> str:
    if trigger == STALLED_PQL:
        return str(evidence["stalled_expansion_type"])
    return rules.expansion_type(trigger)


def route_and_score(
    rules: SegmentRules,
    trigger: str,
    level: float,
    mrr: float | None,
    signal_stack: int,
    evidence: dict[str, Any] | None = None,
) -> tuple[str, float, int]:
    """Route, estimated expansion MRR and score of a signal (contract section 8; README).
    `evidence` is needed for stalled_pql, which routes and ranks as what it escalated."""
    routing = rules.routing
    evidence = evidence or {}
    share = getattr(routing.expansion_share, expansion_type(rules, trigger, evidence))
    estimate = round((mrr or 0.0) * share, 2)
    if signal_stack >= routing.sales_min_signal_stack or estimate >= routing.sales_min_estimate:
        route = "sales"
    elif estimate >= routing.csm_min_estimate:
        route = "csm"
    else:
        route = "in_app"
    route = max(route, rules.min_route(trigger), key=ROUTES.index)
    weights = rules.score
    last_rank = len(rules.priority) - 1
    ranked, _ = ranked_as(trigger, level, evidence)
    priority_share = (last_rank - rules.rank(ranked)) / last_rank if last_rank else 1.0
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
        segment = state.segment
        rules = self.rules.for_segment(segment)
        ts = event.timestamp
        key = event_key(event.event_id)
        seen_at = state.seen_at(key)
        dedup_window = rules.dedup_window_hours * HOUR
        if seen_at is not None and abs(ts - seen_at) <= dedup_window:
            return DUPLICATE
        previous_now = state.now
        converted, mrr_rise = (
            outcomes.conversion(state, event.properties)
            if isinstance(event, AccountUpdated)
            else (False, None)
        )
        state.apply(event, rules.triggers.seat_saturation.levels[0])
        state.remember(key, ts, dedup_window)
        outcome = NOTHING
        # outcomes and conversions count however late they come
        if converted:
            answer = outcomes.answer_conversion(state, mrr_rise, ts, event.event_id)
            if answer is not None:
                outcome = Outcome(answers=[answer])
        elif isinstance(event, ExpansionOutcome):
            matched = outcomes.answer_outcome(state, event)
            answers = [matched] if isinstance(matched, Answer) else []
            outcome = Outcome(answers=answers, unmatched=matched is False)
        if previous_now is not None and ts < previous_now - rules.late_allowance_hours * HOUR:
            return Outcome(answers=list(outcome.answers), unmatched=outcome.unmatched, late=True)
        if state.segment != segment:
            # the event changed the segment, and with it the rules
            rules = self.rules.for_segment(state.segment)
        fired = evaluate(state, event, rules)
        fired_names = {f.trigger for f in fired} if fired else ()
        for name, memory in state.triggers.items():
            if memory.logged and name not in fired_names:
                # the condition ended: a later gate or suppression is news again
                memory.logged = []
        if not fired:
            return outcome
        if outcome is NOTHING:
            outcome = Outcome()
        return _Step(state, event, rules, self.rules.default_segment, outcome).decide(fired)


@dataclass(slots=True)
class _Step:
    """The decisions one event leads to, for its account, under the rules in force."""

    state: AccountState
    event: Event
    rules: SegmentRules
    default_segment: str
    outcome: Outcome = field(default_factory=Outcome)

    def decide(self, fired: list[Fired]) -> Outcome:
        """Gate, then cool down, then resolve collisions among what is left. A stalled
        in_app primary is decided first, once, and escalated when nothing stops it."""
        state, now = self.state, self.state.now
        assert now is not None
        gate = failed_gate(state, self.rules)
        if fired[0].trigger == STALLED_PQL:
            stalled, fired = fired[0], fired[1:]
            assert state.primary is not None
            state.primary.stall_decided = True
            if gate is not None:
                self.suppress(stalled, *gate)
            elif self.cooling_down(stalled, now):
                self.suppress(stalled, "cooldown", self.cooldown)
            else:
                current = state.primary.signal
                self.publish(stalled, current["co_signals"], [], current["signal_id"])
        candidates: list[Fired] = []
        for trigger in fired:
            if gate is not None:
                self.suppress(trigger, *gate)
            elif self.cooling_down(trigger, now):
                self.suppress(trigger, "cooldown", self.cooldown)
            else:
                candidates.append(trigger)
        if candidates:
            self.resolve_collisions(candidates)
        return self.outcome

    def cooling_down(self, fired: Fired, now: float) -> bool:
        """Whether `fired` was published lately at this level or above."""
        memory = self.state.triggers.get(fired.trigger)
        if memory is None or memory.level is None or memory.published_at is None:
            return False
        return (
            now - memory.published_at < self.rules.cooldown_days * DAY
            and fired.level <= memory.level
        )

    def cooldown(self, fired: Fired) -> dict[str, Any]:
        """The cooldown `fired` is in: the decision's detail."""
        memory = self.state.triggers[fired.trigger]
        assert memory.published_at is not None
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
        first, rest = candidates[0], candidates[1:]
        # the primary stays current after the window, but no longer collides
        if state.primary is None or state.now - state.primary.at >= window:
            self.publish(first, [], rest, supersedes=None)
            return
        current = state.primary.signal
        trigger, level = ranked_as(current["trigger"], current["level"], current["evidence"])
        rises = first.trigger == trigger and first.level > level
        if rises or rules.rank(first.trigger) < rules.rank(trigger):
            carried = [*current["co_signals"], trigger]
            self.publish(first, carried, rest, supersedes=current["signal_id"])
        else:
            self.join_primary(candidates)

    def publish(
        self, fired: Fired, carried: list[str], colliding: list[Fired], supersedes: str | None
    ) -> None:
        """Publish `fired` as the new primary; `colliding` triggers join it as co-signals."""
        state = self.state
        co_signals = [*carried, *(f.trigger for f in colliding)]
        signal = self.stacked(self.signal(fired, supersedes), co_signals)
        assert state.now is not None
        state.primary = Primary(signal, state.now, self.event.timestamp)
        once_per = self.rules.catalog[fired.trigger].once_per
        state.triggers[fired.trigger] = TriggerMemory(
            fired.level,
            state.now,
            published_for=None if once_per is None else once_per(state),
            decided_day=state.today,
        )
        outcomes.remember(
            state,
            Published(
                signal["signal_id"],
                fired.trigger,
                signal["route"],
                signal["segment"],
                self.event.timestamp,
            ),
        )
        self.outcome.signals.append(signal)
        self.outcome.serving = signal
        self.collide(colliding, signal["signal_id"])

    def join_primary(self, colliding: list[Fired]) -> None:
        """Add triggers of lower or equal priority to the active primary's co-signals."""
        assert self.state.primary is not None
        current = self.state.primary.signal
        joining = (*current["co_signals"], *(f.trigger for f in colliding))
        co_signals = self.co_signals(current, joining)
        if co_signals != current["co_signals"]:
            self.state.primary.signal = self.outcome.serving = self.stacked(current, co_signals)
        self.collide(colliding, current["signal_id"])

    def collide(self, colliding: list[Fired], primary_id: str) -> None:
        for fired in colliding:
            self.suppress(fired, "collision", {"primary_signal_id": primary_id})

    def co_signals(self, signal: dict[str, Any], names: Iterable[str]) -> list[str]:
        """These triggers as `signal`'s co-signals: each once, not itself, by priority."""
        return sorted(set(names) - {signal["trigger"]}, key=self.rules.rank)

    def stacked(self, signal: dict[str, Any], co_signals: Iterable[str]) -> dict[str, Any]:
        """`signal` with these co-signals, and the stack, route and score that follow."""
        rules, co = self.rules, self.co_signals(signal, co_signals)
        stack = 1 + len(co)
        route, estimate, score = route_and_score(
            rules, signal["trigger"], signal["level"], self.state.mrr, stack, signal["evidence"]
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
        route, estimate, score = route_and_score(
            rules, fired.trigger, fired.level, state.mrr, 1, fired.evidence
        )
        return signal_record(
            signal_id=signal_id(state.account_id, fired.trigger, fired.level, event.event_id),
            account_id=state.account_id,
            trigger=fired.trigger,
            expansion_type=expansion_type(rules, fired.trigger, fired.evidence),
            level=fired.level,
            score=score,
            route=route,
            segment=state.segment or self.default_segment,
            estimated_expansion_mrr=estimate,
            signal_stack=1,
            co_signals=[],
            supersedes=supersedes,
            evidence=fired.evidence,
            account=self.context(),
            detected_at=format_time(event.timestamp),
            emitted_at=None,
            source_event_id=event.event_id,
        )

    def context(self) -> dict[str, Any]:
        """The account as the detector knows it now, for a person to act on a signal."""
        state = self.state
        return {
            "plan": state.plan,
            "seat_limit": state.seat_limit,
            "seats_in_use": len(state.seats),
            "active_users_30d": len(state.active_day_counts(CONTEXT_DAYS)),
            "mrr": state.mrr,
            "health_score": state.health_score,
            "nps": state.nps,
            "renewal_date": None if state.renewal_date is None else format_time(state.renewal_date),
            "activated_at": None if state.activated_at is None else format_time(state.activated_at),
            "departments_30d": state.departments_in(CONTEXT_DAYS),
        }

    def suppress(
        self,
        fired: Fired,
        reason: str,
        detail: dict[str, Any] | Callable[[Fired], dict[str, Any]],
    ) -> None:
        """Log a fired trigger that is not published, once per (trigger, level, reason).
        `detail` may be how to make it: made only when the decision is logged."""
        memory = self.state.triggers.get(fired.trigger)
        if memory is None:
            memory = self.state.triggers[fired.trigger] = TriggerMemory()
        memory.decided_day = self.state.today
        logged = f"{fired.level:g}|{reason}"
        if logged in memory.logged:
            return
        memory.logged.append(logged)
        if callable(detail):
            detail = detail(fired)
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

"""The backtest's replay: a file of events through the detector's own decisions, as the worker."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import orjson

from streams.clock import day_of
from streams.domain.account import apply_events
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.events import Event, decode, parse_timestamp
from streams.publish import Collected
from streams.rules import Rules

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
    # what left the decision code, through the same publisher seam as the worker's outputs
    published: Collected = field(default_factory=Collected)
    signals: list[dict[str, Any]] = field(default_factory=list)  # published, in order
    decisions: list[DecisionRecord] = field(default_factory=list)
    # what the events' own expansion_outcome events and self-serve conversions answered
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    duplicates: Counter[str] = field(default_factory=Counter)  # by account
    late: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.detector = Detector(self.rules)

    @property
    def deduplicated(self) -> Counter[str]:
        """Signals held back by the ledger, by account."""
        return self.published.deduplicated

    async def apply(self, state: AccountState, event: Event) -> None:
        """One event through the detector and the publisher, as the worker's agent does."""
        applied = apply_events(self.detector, state, (event,))
        if applied.duplicates:
            self.duplicates[event.account_id] += 1
            return
        if applied.late:
            self.late[event.account_id] += 1
        await self.published.publish(event.account_id, applied.outcomes)

    def forget(self, accounts: set[str]) -> None:
        """Drop what these accounts led to, before they are replayed again."""
        self.published.forget(accounts)
        for counter in (self.duplicates, self.late):
            for account in accounts:
                counter.pop(account, None)

    def finish(self) -> None:
        """Keep what the measures read of the published outputs."""
        self.signals = self.published.signals
        self.outcomes = self.published.outcomes
        self.decisions = [
            DecisionRecord(
                decision["decision_id"],
                decision["account_id"],
                decision["trigger"],
                decision["signal"]["route"],
                decision["reason"],
                day_of(parse_timestamp(decision["detected_at"])),
            )
            for decision in self.published.decisions
        ]


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


ReadProgress = Callable[[int, int, int], None]  # (bytes read, file size, events)


def _decoded(
    path: str,
    on_skip: Callable[[Skipped], None] | None,
    progress: ReadProgress | None,
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
    progress: ReadProgress | None = None,
) -> Replay:
    """Replay the events file once under each (label, rules), in event-time order.

    The replay calls `Detector.apply` with one `AccountState` per account, event by event in
    event-time order, and drops a signal whose id was already published, exactly as the worker
    does with its Redis ledger; so the signals it reports are the ones the worker would publish.
    Accounts are independent, so each account's events are replayed in time order (ties in file
    order); a file whose accounts are already in order (the simulator's, a keyed topic's dump) is
    replayed in one streaming pass, and any account that is not is replayed again, sorted, in a
    second pass that holds only that account's events in memory.
    """
    return asyncio.run(_replay(path, rulesets, on_skip, progress))


async def _replay(
    path: str | Path,
    rulesets: Sequence[tuple[str, Rules]],
    on_skip: Callable[[Skipped], None] | None,
    progress: ReadProgress | None,
) -> Replay:
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
        day = day_of(ts)
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
            await run.apply(state, event)

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
                await run.apply(state, event)
    for run in runs:
        run.finish()
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
            moment = datetime.combine(date.fromisoformat(text), time(), UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"date: not a date: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"date: a time needs a UTC offset: {text[:40]!r}")
    return day_of(moment.timestamp())

"""Per-account state: a compact value of plan, limits, seats, usage and day-bucketed activity."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from streams.clock import day_of, month_of, parse_time
from streams.events import (
    AccountUpdated,
    Event,
    ExpansionOutcome,
    FeatureGateHit,
    FeatureUsed,
    InviteSent,
    SeatAssigned,
    SeatRemoved,
    SupportTicket,
    UsageRecorded,
    UserActive,
    WorkflowRun,
)

if TYPE_CHECKING:
    from streams.domain.triggers import Evaluated

T = TypeVar("T")
# How many days of per-user activity are kept: enough for the longest window the
# rules allow (60 days), and for the churn gate's two back-to-back windows (2 x 30).
HISTORY_DAYS = 64
# How many days a feature's last use is kept: the longest window a rule may give (a year).
FEATURE_DAYS = 366
# How many published signals an account remembers, latest last, for outcomes to answer.
PUBLISHED_KEPT = 16
# Where `AccountState.summary` finds the clock and the trigger memory in the stored list.
STORED_NOW = 2
STORED_TRIGGERS = 20
# What an event changed in the state, as bits of AccountState.changes: users' activity and
# departments, gate hits and invites, workflow runs, feature use, the account's own fields.
# A trigger that reads only these and the day names them (Trigger.reads).
CHANGES = {"activity": 1, "tally": 2, "workflow": 4, "feature": 8, "account": 16}
ACTIVITY, TALLY, WORKFLOW, FEATURE, ACCOUNT = CHANGES.values()


class ActivityWindow:
    """Users active in the last `days` days up to `day`, with their number of active days,
    and the sum and the top of those numbers, kept current user by user."""

    __slots__ = ("day", "counts", "total", "top", "top_user")

    def __init__(self, day: int, counts: dict[str, int]) -> None:
        self.day = day
        self.counts = counts
        self.total = sum(counts.values())
        self.top = max(counts.values(), default=0)
        # the first user in id order among those with the top count
        self.top_user = min((u for u, n in counts.items() if n == self.top), default=None)

    def count(self, user: str, days: int) -> None:
        """Set a user's count. Within a day a count only grows: activity is never taken back."""
        self.total += days - self.counts.get(user, 0)
        self.counts[user] = days
        if days > self.top:
            self.top, self.top_user = days, user
        elif days == self.top and (self.top_user is None or user < self.top_user):
            self.top_user = user


@dataclass(slots=True)
class TriggerMemory:
    """What the detector remembers of one trigger of an account. Stored as the list
    [level, published_at, logged, published_for, decided_day] (the last two since version
    4, each left out when it and those after it are None)."""

    level: float | None = None  # the level last published
    published_at: float | None = None  # account clock when it was published
    # "level|reason" of each decision logged since the trigger's condition began to hold
    logged: list[str] = field(default_factory=list)
    # what it was published for, for a trigger published once per something (a renewal date)
    published_for: Any = None
    # the day of the account clock when it last fired and was published or not (gated,
    # cooling down, colliding): the scorecard's active triggers
    decided_day: int | None = None

    def stored(self) -> list[Any]:
        stored = [self.level, self.published_at, self.logged, self.published_for, self.decided_day]
        while len(stored) > 3 and stored[-1] is None:
            stored.pop()
        return stored


@dataclass(slots=True)
class Primary:
    """The account's current primary signal, as last published or joined. Stored as
    [signal, at, detected, stall_decided] ([signal, at] before version 4)."""

    signal: dict[str, Any]
    at: float  # account clock when it was published
    detected: float  # its detected_at, as epoch seconds
    stall_decided: bool = False  # whether stalled_pql has been decided for it

    def stored(self) -> list[Any]:
        return [self.signal, self.at, self.detected, self.stall_decided]

    @classmethod
    def restored(cls, stored: list[Any]) -> Primary:
        if len(stored) == 2:
            return cls(stored[0], stored[1], parse_time(stored[0]["detected_at"]))
        return cls(*stored)


@dataclass(slots=True)
class Published:
    """A signal the account published, as outcomes answer it. Stored as a list in this
    order."""

    signal_id: str
    trigger: str
    route: str
    segment: str
    detected: float  # its detected_at, as epoch seconds
    stages: list[str] = field(default_factory=list)  # the outcome stages that answered it

    def stored(self) -> list[Any]:
        return [self.signal_id, self.trigger, self.route, self.segment, self.detected, self.stages]


def _stored(value: Any) -> list[Any]:
    """How orjson writes the records inside a state: as lists, the compact stored layout."""
    if isinstance(value, TriggerMemory | Primary | Published):
        return value.stored()
    raise TypeError(f"{type(value).__name__} is not part of an account state")


def event_key(event_id: str) -> int:
    """A stable 64-bit key for an event_id, so the dedup memory stays small."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


class AccountState:
    """Everything the detector remembers about one account, as one compact value.

    Activity is kept per user as (last active day, bit mask of the days before it),
    gate hits and invites as per-day counts, usage per meter for the current month.
    """

    # Caches of window queries: not stored, rebuilt on demand after a restore.
    TRANSIENT = (
        "activity_revision",
        "history_revision",
        "department_revision",
        "usage_revision",
        "workflow_revision",
        "changes",
        "memo",
        "evaluated",
        "windows",
        "touched",
    )
    __slots__ = (
        "account_id",
        "now",
        "today",
        "plan",
        "seat_limit",
        "usage_limits",
        "segment",
        "mrr",
        "activated_at",
        "health_score",
        "seats",
        "users",
        "departments",
        "usage",
        "gate_features",
        "gate_users",
        "gate_hits",
        "invites",
        "seen",
        "saturated_since",
        "triggers",
        "primary",
        "pruned_day",
        "renewal_date",
        "nps",
        "department_days",
        "workflow_users",
        "workflow_runs",
        "workflow_days",
        "features_used",
        "features_ever",
        "tickets",
        "tickets_ever",
        "published",
        *TRANSIENT,
    )

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.now: float | None = None  # latest event time seen: the account's clock
        self.today = 0  # the day of the account's clock (not stored: derived)
        self.plan: str | None = None
        self.seat_limit: int | None = None
        self.usage_limits: dict[str, float] = {}
        self.segment: str | None = None
        self.mrr: float | None = None
        self.activated_at: float | None = None
        self.health_score: float | None = None
        self.seats: set[str] = set()
        self.users: dict[str, list[Any]] = {}  # user -> [last_day, day_mask, department]
        self.departments: dict[str, float] = {}  # department -> first seen (event time)
        self.usage: dict[str, list[float]] = {}  # meter -> [month, quantity]
        self.gate_features: dict[str, int] = {}  # feature -> last day hit
        self.gate_users: dict[str, int] = {}  # user -> last day with a gate hit
        self.gate_hits: dict[int, int] = {}  # day -> gate hits
        self.invites: dict[int, int] = {}  # day -> invites sent
        # event_key -> [event time, account time until which it is remembered], for dedup
        self.seen: dict[int, list[float]] = {}
        self.saturated_since: float | None = None
        self.triggers: dict[str, TriggerMemory] = {}
        self.primary: Primary | None = None
        self.pruned_day = 0
        self.renewal_date: float | None = None
        self.nps: float | None = None
        self.department_days: dict[str, int] = {}  # department -> last day on an event
        # user -> {workflow: [last_day, day_mask]}: the days the user ran the workflow
        self.workflow_users: dict[str, dict[str, list[int]]] = {}
        self.workflow_runs: dict[str, dict[int, int]] = {}  # workflow -> day -> runs
        self.workflow_days: dict[int, list[int]] = {}  # day -> [runs, completed runs]
        self.features_used: dict[str, int] = {}  # feature -> last day used
        self.features_ever = False  # whether the account ever sent a feature_used
        self.tickets: dict[int, int] = {}  # day -> support tickets
        self.tickets_ever = False  # whether the account ever sent a support_ticket
        self.published: list[Published] = []  # the latest published signals, latest last
        # Not stored: revisions count changes to users and departments (activity), to
        # activity before today (history), to departments, to usage and its limits and to
        # the days users ran their workflows, so that queries over them can be reused while
        # their revision and the day stay the same.
        self.activity_revision = 0
        self.history_revision = 0
        self.department_revision = 0
        self.usage_revision = 0
        self.workflow_revision = 0
        # CHANGES bits set since the triggers were last evaluated (streams.domain.triggers)
        self.changes = 0
        self.memo: dict[str, tuple[Any, Any]] = {}
        # window days -> activity in the window ending today, kept current as it arrives
        self.windows: dict[int, ActivityWindow] = {}
        # the last results of the triggers that read only the day and CHANGES
        self.evaluated: Evaluated | None = None
        # Users (ids) and dedup entries (event keys) whose entries changed since the state
        # was last stored; None: any may have. A large account rewrites only their parts.
        self.touched: set[str | int] | None = None

    # -- applying events -------------------------------------------------

    def apply(self, event: Event, saturation_floor: float) -> None:
        """Fold one accepted (not duplicate) event into the state.

        saturation_floor is the lowest seat_saturation level: the ratio from which
        the time the account has stayed saturated is measured.
        """
        ts = event.timestamp
        day = day_of(ts)
        if self.now is None or ts > self.now:
            self.now = ts
            self.today = day
        department = None
        # the most frequent types first (in the simulation)
        if isinstance(event, UserActive):
            department = event.properties.department
        elif isinstance(event, UsageRecorded):
            self._record_usage(event.properties.meter, event.properties.quantity, ts)
        elif isinstance(event, FeatureUsed):
            feature = event.properties.feature
            if day > self.features_used.get(feature, -1):
                self.features_used[feature] = day
                self.changes |= FEATURE
            self.features_ever = True
        elif isinstance(event, WorkflowRun):
            self._record_run(event.user_id, event.properties.workflow, event.properties.status, day)
        elif isinstance(event, SeatAssigned):
            self.seats.add(event.user_id)
            department = event.properties.department
        elif isinstance(event, SupportTicket):
            self.tickets[day] = self.tickets.get(day, 0) + 1
            self.tickets_ever = True
        elif isinstance(event, AccountUpdated):
            self._update_account(event)
        elif isinstance(event, FeatureGateHit):
            feature = event.properties.feature
            self.gate_features[feature] = max(day, self.gate_features.get(feature, day))
            self.gate_users[event.user_id] = max(day, self.gate_users.get(event.user_id, day))
            self.gate_hits[day] = self.gate_hits.get(day, 0) + 1
            self.changes |= TALLY
        elif isinstance(event, InviteSent):
            self.invites[day] = self.invites.get(day, 0) + 1
            self.changes |= TALLY
        elif isinstance(event, SeatRemoved):
            self.seats.discard(event.user_id)
            department = event.properties.department
        elif isinstance(event, ExpansionOutcome):
            # its user recorded the outcome in a CRM: not a user of the product
            return
        if event.user_id is not None:
            self._mark_active(event.user_id, day, department, ts)
        if self.seat_limit or self.saturated_since is not None:
            self._track_saturation(ts, saturation_floor)
        if self.today > self.pruned_day:
            self._prune(self.today)

    def _update_account(self, event: AccountUpdated) -> None:
        props = event.properties
        self.changes |= ACCOUNT
        for name in props.model_fields_set:
            value = getattr(props, name)
            if name == "usage_limits":
                value = dict(value or {})
                self.usage_revision += 1
            setattr(self, name, value)

    def _record_run(self, user: str, workflow: str, status: str, day: int) -> None:
        self.changes |= WORKFLOW
        runs = self.workflow_runs.setdefault(workflow, {})
        runs[day] = runs.get(day, 0) + 1
        totals = self.workflow_days.setdefault(day, [0, 0])
        totals[0] += 1
        totals[1] += status == "completed"
        workflows = self.workflow_users.setdefault(user, {})
        record = workflows.get(workflow)
        if record is None:
            workflows[workflow] = [day, 1]
            self.workflow_revision += 1
        elif _mark_day(record, day):
            self.workflow_revision += 1

    def _record_usage(self, meter: str, quantity: float, ts: float) -> None:
        self.usage_revision += 1
        month = month_of(ts)
        current = self.usage.get(meter)
        if current is None or month > current[0]:
            self.usage[meter] = [month, quantity]
        elif month == current[0]:
            current[1] += quantity
        # usage of a month already closed is not kept

    def _mark_active(self, user: str, day: int, department: str | None, ts: float) -> None:
        if self.touched is not None:
            self.touched.add(user)  # seat and gate events come here too
        record = self.users.get(user)
        if day < self.today:
            self.history_revision += 1  # (perhaps) activity on a past day
        if record is None:
            self.users[user] = [day, 1, department]
            self.activity_revision += 1
            self.changes |= ACTIVITY
        else:
            changed = _mark_day(record, day)
            if department is not None and department != record[2]:
                record[2] = department
                changed = True
            if changed:
                self.activity_revision += 1
                self.changes |= ACTIVITY
        if self.windows:
            self._recount(user)
        if department is not None:
            if day > self.department_days.get(department, -1):
                self.department_days[department] = day
            first = self.departments.get(department)
            if first is None or ts < first:
                self.departments[department] = ts
                self.activity_revision += 1
                self.department_revision += 1
                self.changes |= ACTIVITY

    def _track_saturation(self, ts: float, floor: float) -> None:
        if self.seat_limit and len(self.seats) / self.seat_limit >= floor:
            if self.saturated_since is None:
                self.saturated_since = ts
        else:
            self.saturated_since = None

    def _prune(self, today: int) -> None:
        """Drop what is older than the history kept. Each collection is rebuilt only when it
        holds something that old (most days none does)."""
        oldest = today - HISTORY_DAYS
        for record in self.users.values():
            if record[0] <= oldest:
                self.users = {u: r for u, r in self.users.items() if r[0] > oldest}
                break
        self.gate_features = _recent_values(self.gate_features, oldest)
        self.gate_users = _recent_values(self.gate_users, oldest)
        self.department_days = _recent_values(self.department_days, oldest)
        self.features_used = _recent_values(self.features_used, today - FEATURE_DAYS)
        self.gate_hits = _recent_days(self.gate_hits, oldest)
        self.invites = _recent_days(self.invites, oldest)
        self.tickets = _recent_days(self.tickets, oldest)
        # a workflow's runs and its users' days are on days workflow_days holds
        if self.workflow_days and min(self.workflow_days) <= oldest:
            self._prune_workflows(oldest)
        if self.now is not None:
            self.seen = {k: entry for k, entry in self.seen.items() if entry[1] >= self.now}
        self.pruned_day = today
        self.touched = None

    def drop_history_before(self, day: int) -> None:
        """Forget the users last active before `day`: the oldest history goes first when the
        stored value must shrink to fit its limit."""
        self.users = {u: r for u, r in self.users.items() if r[0] >= day}
        self._prune_workflows(day - 1)
        self.touched = None
        self.windows.clear()
        self.activity_revision += 1
        self.history_revision += 1
        self.changes |= ACTIVITY | WORKFLOW

    def _prune_workflows(self, oldest: int) -> None:
        self.workflow_revision += 1
        self.workflow_days = {d: totals for d, totals in self.workflow_days.items() if d > oldest}
        runs = {
            workflow: {d: n for d, n in days.items() if d > oldest}
            for workflow, days in self.workflow_runs.items()
        }
        self.workflow_runs = {workflow: days for workflow, days in runs.items() if days}
        users = {
            user: {w: record for w, record in workflows.items() if record[0] > oldest}
            for user, workflows in self.workflow_users.items()
        }
        self.workflow_users = {user: workflows for user, workflows in users.items() if workflows}

    def seen_at(self, key: int) -> float | None:
        """Event time of the event with this key, while it is still remembered."""
        entry = self.seen.get(key)
        if entry is None or (self.now is not None and entry[1] < self.now):
            return None
        return entry[0]

    def remember(self, key: int, ts: float, window: float) -> None:
        """Remember an applied event for `window` seconds of the account's clock.

        The window starts at now, not at the event's own time, so that a copy of an event
        more than `window` late is still recognised. Expired entries go in the daily prune.
        """
        assert self.now is not None
        self.seen[key] = [ts, max(ts, self.now) + window]
        if self.touched is not None:
            self.touched.add(key)

    # -- window queries ----------------------------------------------------

    def memoized(self, name: str, key: Any, compute: Callable[..., T], *args: Any) -> T:
        """compute(*args), or its last result while `key` stays the same.

        The key names everything the result depends on: the rule, the day, the revision
        of the data it reads. (A prune happens only on a new day.) The arguments are given
        apart, not in a closure: some run on every event.
        """
        hit = self.memo.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]  # type: ignore[no-any-return]  # (what compute gave for this key)
        value = compute(*args)
        self.memo[name] = (key, value)
        return value

    def active_days(self, record: list[Any], first_day: int, last_day: int) -> int:
        """Days from first_day to last_day (inclusive) on which the user had an event."""
        user_last = record[0]
        if user_last < first_day:
            return 0
        mask = record[1] >> max(0, user_last - last_day)
        span = min(user_last, last_day) - first_day + 1
        return (mask & ((1 << span) - 1)).bit_count()

    def active_day_counts(self, days: int) -> dict[str, int]:
        """Users active in the last `days` days up to today, with their number of active days."""
        return self.activity_window(days).counts

    def activity_window(self, days: int) -> ActivityWindow:
        """Activity in the last `days` days up to today."""
        today = self.today
        window = self.windows.get(days)
        if window is not None and window.day == today:
            return window
        first = today - days + 1
        # a user's last active day is never after today, the day of the account's clock
        counts = {
            user: (mask & ((1 << (last - first + 1)) - 1)).bit_count()
            for user, (last, mask, _) in self.users.items()
            if last >= first
        }
        window = self.windows[days] = ActivityWindow(today, counts)
        return window

    def _recount(self, user: str) -> None:
        """Bring today's windows up to date with one user's new activity."""
        today = self.today
        last, mask, _ = self.users[user]
        for days, window in self.windows.items():
            if window.day == today:
                first = today - days + 1
                if last >= first:
                    window.count(user, (mask & ((1 << (last - first + 1)) - 1)).bit_count())

    def active_users(self, first_day: int, last_day: int) -> int:
        return sum(
            1 for record in self.users.values() if self.active_days(record, first_day, last_day)
        )

    def window_sum(self, counts: dict[int, int], days: int) -> int:
        """The counts of the `days` days up to today."""
        first = self.today - days + 1
        return sum(n for day, n in counts.items() if day >= first)

    def departments_in(self, days: int) -> int:
        """Distinct departments on events in the last `days` days."""
        first = self.today - days + 1
        return sum(1 for day in self.department_days.values() if day >= first)

    def features_in(self, days: int) -> int:
        """How many features were used in the last `days` days."""
        first = self.today - days + 1
        return len([day for day in self.features_used.values() if day >= first])

    def answered(self, signal_id: str) -> bool:
        """Whether an outcome has answered this published signal."""
        return any(p.stages for p in self.published if p.signal_id == signal_id)

    # -- serialization -------------------------------------------------------

    def to_bytes(self, per_user: bool = True) -> bytes:
        """The stored value; without the per-user entries (users, seats, gate_users,
        workflow_users) and the dedup memory when not `per_user`: a large account keeps those
        apart (streams.io.records).
        """
        # orjson's result keeps a 4 KiB allocation whatever its length; an exact copy is
        # what a table holding one value per account should keep
        return bytes(memoryview(self._dumps(per_user)))

    def _dumps(self, per_user: bool) -> bytes:
        return orjson.dumps(
            [
                4,
                self.account_id,
                self.now,
                self.plan,
                self.seat_limit,
                self.usage_limits,
                self.segment,
                self.mrr,
                self.activated_at,
                self.health_score,
                sorted(self.seats) if per_user else [],
                self.users if per_user else {},
                self.departments,
                self.usage,
                self.gate_features,
                self.gate_users if per_user else {},
                list(self.gate_hits.items()),
                list(self.invites.items()),
                list(self.seen.items()) if per_user else [],
                self.saturated_since,
                self.triggers,
                self.primary,
                self.pruned_day,
                self.renewal_date,
                self.nps,
                self.department_days,
                self.workflow_users if per_user else {},
                {w: list(days.items()) for w, days in self.workflow_runs.items()},
                list(self.workflow_days.items()),
                self.features_used,
                self.features_ever,
                list(self.tickets.items()),
                self.tickets_ever,
                self.published,
            ],
            default=_stored,
            option=orjson.OPT_PASSTHROUGH_DATACLASS,
        )

    @staticmethod
    def summary(data: bytes) -> tuple[float | None, dict[str, float]]:
        """The account's clock and when each trigger last published, read from a stored value."""
        values = orjson.loads(data)
        triggers: dict[str, list[Any]] = values[STORED_TRIGGERS]
        published = {name: TriggerMemory(*memory).published_at for name, memory in triggers.items()}
        return values[STORED_NOW], {name: at for name, at in published.items() if at is not None}

    @classmethod
    def from_bytes(cls, data: bytes) -> AccountState:
        values = orjson.loads(data)
        if values[0] not in (1, 2, 3, 4):
            raise ValueError(f"unknown account state version {values[0]}")
        if values[0] == 2:
            values.pop()  # input positions: kept beside the state since 3 (streams.io.accounts)
        state = cls(values[1])
        if values[0] == 4:
            state._restore_v2(values[23:])
            del values[23:]
        (
            state.now,
            state.plan,
            state.seat_limit,
            state.usage_limits,
            state.segment,
            state.mrr,
            state.activated_at,
            state.health_score,
            seats,
            state.users,
            state.departments,
            state.usage,
            state.gate_features,
            state.gate_users,
            gate_hits,
            invites,
            seen,
            state.saturated_since,
            triggers,
            primary,
            state.pruned_day,
        ) = values[2:]
        state.seats = set(seats)
        state.today = day_of(state.now) if state.now is not None else 0
        state.gate_hits = dict(map(tuple, gate_hits))
        state.invites = dict(map(tuple, invites))
        state.seen = dict(map(tuple, seen))
        state.triggers = {name: TriggerMemory(*memory) for name, memory in triggers.items()}
        state.primary = None if primary is None else Primary.restored(primary)
        return state

    def _restore_v2(self, values: list[Any]) -> None:
        """The fields contract v2 added, stored since version 4."""
        (
            self.renewal_date,
            self.nps,
            self.department_days,
            self.workflow_users,
            workflow_runs,
            workflow_days,
            self.features_used,
            self.features_ever,
            tickets,
            self.tickets_ever,
            published,
        ) = values
        self.workflow_runs = {w: dict(map(tuple, days)) for w, days in workflow_runs.items()}
        self.workflow_days = dict(map(tuple, workflow_days))
        self.tickets = dict(map(tuple, tickets))
        self.published = [Published(*p) for p in published]


def _recent_days(counts: dict[int, T], oldest: int) -> dict[int, T]:
    """`counts` by day without the days up to `oldest`: itself when it has none."""
    if counts and min(counts) <= oldest:
        return {day: n for day, n in counts.items() if day > oldest}
    return counts


def _recent_values(last_days: dict[str, int], oldest: int) -> dict[str, int]:
    """`last_days` without the entries whose day is up to `oldest`: itself when it has none."""
    if last_days and min(last_days.values()) <= oldest:
        return {key: day for key, day in last_days.items() if day > oldest}
    return last_days


def _mark_day(record: list[Any], day: int) -> bool:
    """Set `day` in a [last_day, day_mask, ...] record of the days something happened;
    whether it was not set yet."""
    last_day, mask = record[0], record[1]
    if day > last_day:
        record[1] = ((mask << (day - last_day)) | 1) & ((1 << HISTORY_DAYS) - 1)
        record[0] = day
        return True
    if last_day - day < HISTORY_DAYS:
        record[1] = mask | 1 << (last_day - day)
        return record[1] != mask
    return False

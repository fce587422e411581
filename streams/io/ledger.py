"""Redis: the publish ledger (no signal_id published twice) and the serving view."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.clock import DAY
from streams.io import metrics
from streams.io.backoff import backoff_delays

log = logging.getLogger(__name__)
T = TypeVar("T")
LEDGER_TTL_SECONDS = int(90 * DAY)  # longer than any cooldown or replay horizon
RETRY_FIRST_DELAY = 0.25  # seconds; then doubling up to retry_max_seconds
# Move a partition's checkpoint forward only: two workers may overlap during a rebalance.
_ADVANCE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""
# The response SLA's pending signals (streams.io.sla): a sorted set of members by deadline.
SLA_PENDING = "sla_pending"
_TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


@dataclass(frozen=True, slots=True)
class Mark:
    """A ledger mark: `ledger:<signal_id>` for a published signal, `outcome:<key>` for a
    written outcome record, with its place on its topic (`signals` or `outcomes`) and what
    it does to the response SLA's pending set."""

    key: str
    topic: str
    partition: int | None
    offset: int | None
    enters: tuple[str, float] | None = None  # (member, deadline) to enter in it
    takes_out: str | None = None  # the member to take out of it

    @classmethod
    def published(
        cls,
        signal_id: str,
        partition: int | None,
        offset: int | None,
        pending: tuple[str, float] | None,
    ) -> Mark:
        return cls(f"ledger:{signal_id}", "signals", partition, offset, enters=pending)

    @classmethod
    def answered(
        cls, answer_key: str, partition: int | None, offset: int | None, member: str | None
    ) -> Mark:
        return cls(f"outcome:{answer_key}", "outcomes", partition, offset, takes_out=member)


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Ledger:
    """What was published, and the current primary signal per account, in Redis.

    Keys (under the prefix): `ledger:<signal_id>` marks a published signal,
    `outcome:<signal_id>:<stage>` a written outcome record;
    `primary:<account_id>` holds the account's primary signal as JSON, with its
    co-signals; the sorted set `accounts_by_score` ranks accounts by that score; the hash
    `signals_checkpoint` (`outcomes_checkpoint`) holds, per partition of the signals
    (outcomes) topic, the offset of the last record marked; the sorted set `sla_pending`
    holds the csm and sales signals not answered yet, by their SLA deadline. Every
    operation retries while Redis is unreachable: processing waits, nothing is lost.
    """

    def __init__(self, url: str, prefix: str, retry_max_seconds: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.retry_max_seconds = retry_max_seconds
        self.redis = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        self.reachable = True

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        delays = None  # made at the first failure: most operations succeed at once
        while True:
            try:
                result = await operation()
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                metrics.REDIS_ERRORS.inc()
                if delays is None:
                    # A first failure may be a pooled connection that a restarted Redis
                    # closed: tried again once before the outage is reported.
                    delays = backoff_delays(RETRY_FIRST_DELAY, self.retry_max_seconds)
                else:
                    metrics.REDIS_UP.set(0)
                    if self.reachable:
                        log.warning(
                            "Redis unreachable at %s (%s); retrying until it answers",
                            redacted(self.url),
                            error.__class__.__name__,
                        )
                    self.reachable = False
                await asyncio.sleep(next(delays))
                continue
            if not self.reachable:
                log.warning("Redis reachable again at %s", redacted(self.url))
            self.reachable = True
            metrics.REDIS_UP.set(1)
            return result

    async def retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """operation() on this Redis, retried the same way: for the other views kept there."""
        return await self._retrying(operation)

    async def ping(self) -> bool:
        """True when Redis answers now (no retry): for readiness checks and the up gauge."""
        try:
            up = bool(await self.redis.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            up = False
        metrics.REDIS_UP.set(int(up))
        return up

    async def published(self, signal_id: str) -> bool:
        return (await self.written([signal_id], []))[0][0]

    async def answered(self, answer_key: str) -> bool:
        """Whether the outcome record of (signal_id, stage) `answer_key` was written."""
        return (await self.written([], [answer_key]))[1][0]

    async def written(
        self, signal_ids: Sequence[str], answer_keys: Sequence[str]
    ) -> tuple[list[bool], list[bool]]:
        """Which of these signals are in the ledger, and which of these outcome records were
        written: in one round trip."""
        keys = [f"{self.prefix}ledger:{signal_id}" for signal_id in signal_ids]
        keys += [f"{self.prefix}outcome:{answer_key}" for answer_key in answer_keys]
        if not keys:
            return [], []

        async def read() -> list[int]:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            return await pipe.execute()  # type: ignore[no-any-return]

        found = [bool(n) for n in await self._retrying(read)]
        return found[: len(signal_ids)], found[len(signal_ids) :]

    async def mark_published(
        self,
        signal_id: str,
        partition: int | None = None,
        offset: int | None = None,
        pending: tuple[str, float] | None = None,
    ) -> None:
        """Record a signal as published; with its place on the signals topic, move that
        partition's checkpoint: everything up to it is in the ledger. `pending` (member,
        deadline) enters the signal in the response SLA's pending set (streams.io.sla)."""
        await self.mark([Mark.published(signal_id, partition, offset, pending)])

    async def mark_answered(
        self,
        answer_key: str,
        partition: int | None = None,
        offset: int | None = None,
        answered: str | None = None,
    ) -> None:
        """Record the outcome record of `answer_key` as written, as mark_published does a
        signal; `answered` is the SLA member the answer takes out of the pending set."""
        await self.mark([Mark.answered(answer_key, partition, offset, answered)])

    async def mark(self, marks: Sequence[Mark], serving: dict[str, Any] | None = None) -> None:
        """Write these marks and, last, `serving` as the account's current signal (it has its
        emitted_at: see serve), in one transaction."""

        async def write() -> None:
            pipe = self.redis.pipeline(transaction=True)
            for mark in marks:
                pipe.set(f"{self.prefix}{mark.key}", 1, ex=LEDGER_TTL_SECONDS)
                if mark.partition is not None and mark.offset is not None:
                    checkpoint = f"{self.prefix}{mark.topic}_checkpoint"
                    pipe.eval(_ADVANCE, 1, checkpoint, mark.partition, mark.offset)
                if mark.enters is not None:
                    member, deadline = mark.enters
                    pipe.zadd(f"{self.prefix}{SLA_PENDING}", {member: deadline})
                if mark.takes_out is not None:
                    pipe.zrem(f"{self.prefix}{SLA_PENDING}", mark.takes_out)
            if serving is not None:
                self._serving(pipe, serving)
            await pipe.execute()

        await self._retrying(write)

    async def checkpoints(self, topic: str = "signals") -> dict[int, int]:
        """Per partition of the signals (or "outcomes") topic, the offset up to which every
        record is in the ledger."""
        stored = await self._retrying(
            lambda: self.redis.hgetall(f"{self.prefix}{topic}_checkpoint")
        )
        return {int(partition): int(offset) for partition, offset in stored.items()}

    async def take_due(self, now: float, limit: int = 1000) -> list[str]:
        """Take out of the SLA's pending set the members whose deadline is past: atomically,
        so that of several workers asking at once each member goes to one."""
        key = f"{self.prefix}{SLA_PENDING}"
        taken = await self._retrying(lambda: self.redis.eval(_TAKE_DUE, 1, key, now, limit))
        return [member.decode() for member in taken]

    async def serve(self, primary: dict[str, Any]) -> None:
        """Make `primary` the account's current signal in the serving view.

        The domain has no wall clock: a primary without `emitted_at` (co-signals joined it,
        or a replay met it in the ledger) keeps the one stored for the same signal.
        """
        key = f"{self.prefix}primary:{primary['account_id']}"

        async def write() -> None:
            current = primary
            if current.get("emitted_at") is None:
                stored = await self.redis.get(key)
                before = orjson.loads(stored) if stored else {}
                if before.get("signal_id") == current["signal_id"]:
                    current = {**current, "emitted_at": before.get("emitted_at")}
            pipe = self.redis.pipeline(transaction=True)
            self._serving(pipe, current)
            await pipe.execute()

        await self._retrying(write)

    def _serving(self, pipe: Pipeline, primary: dict[str, Any]) -> None:
        pipe.set(f"{self.prefix}primary:{primary['account_id']}", orjson.dumps(primary))
        pipe.zadd(f"{self.prefix}accounts_by_score", {primary["account_id"]: primary["score"]})

    async def close(self) -> None:
        await self.redis.aclose()

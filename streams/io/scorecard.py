"""Redis: the readiness scorecard, a row per account kept in scorecard order, read in one call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from streams.domain.scorecard import scorecard_row
from streams.domain.state import AccountState
from streams.io.background import in_slices
from streams.io.ledger import Ledger
from streams.rules import SEGMENTS, Rules

ROW_SLICE = 64  # rows made between turns of the event loop
# A sorted-set score holding readiness and then ACV in cents, exact in a double (below 2**53).
READINESS_WEIGHT = 10**13
ACV_CENTS_CAP = READINESS_WEIGHT - 1
# The ids of the first ARGV[1] + 1 rows of the order KEYS[1] (all with -1), then their rows
# from the hash KEYS[2], in that order: one call. HMGET takes ids in slices: Lua's unpack
# has a stack limit.
_READ = """
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]))
local rows = {}
for first = 1, #ids, 1000 do
  local slice = redis.call('HMGET', KEYS[2], unpack(ids, first, math.min(first + 999, #ids)))
  for _, row in ipairs(slice) do
    if row then rows[#rows + 1] = row end
  end
end
return rows
"""


def order_score(row: dict[str, Any]) -> float:
    """The row's score in the order's sorted sets: ascending scores, and account ids in
    byte order among equal ones, give the scorecard's order (streams.domain.scorecard)."""
    cents = min(round(row["estimated_expansion_acv"] * 100), ACV_CENTS_CAP)
    return -float(row["expansion_readiness"] * READINESS_WEIGHT + cents)


class ScorecardView:
    """The scorecard in Redis, under the ledger's prefix: the hash `scorecard` of rows (JSON)
    by account_id, and the sorted sets `scorecard_order` of every account and
    `scorecard_order:<segment>` of a segment's, scored by `order_score`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.rows_key = f"{ledger.prefix}scorecard"
        self.order_key = f"{ledger.prefix}scorecard_order"

    def segment_key(self, segment: str) -> str:
        return f"{self.order_key}:{segment}"

    async def write(self, states: Iterable[AccountState], rules: Rules) -> None:
        """Write the accounts' rows, in one pipeline (a round trip) whatever their number.
        An account that changed segment leaves the other segments' order."""
        rows = [scorecard_row(state, rules) async for state in in_slices(states, ROW_SLICE)]
        if not rows:
            return
        scores = {row["account_id"]: order_score(row) for row in rows}
        by_segment: dict[str, dict[str, float]] = {segment: {} for segment in SEGMENTS}
        for row in rows:
            by_segment[row["segment"]][row["account_id"]] = scores[row["account_id"]]
        redis = self.ledger.redis

        async def send() -> None:
            pipe = redis.pipeline(transaction=True)
            pipe.hset(self.rows_key, mapping={row["account_id"]: orjson.dumps(row) for row in rows})
            pipe.zadd(self.order_key, scores)
            for segment, members in by_segment.items():
                if members:
                    pipe.zadd(self.segment_key(segment), members)
                others = scores.keys() - members.keys()
                if others:
                    pipe.zrem(self.segment_key(segment), *others)
            await pipe.execute()

        await self.ledger.retrying(send)

    async def read(
        self, top: int | None = None, segment: str | None = None
    ) -> list[dict[str, Any]]:
        """The first `top` rows (all when None), of one segment or of every account."""
        order = self.order_key if segment is None else self.segment_key(segment)
        last = -1 if top is None else top - 1
        if last < 0 and top is not None:
            return []
        redis = self.ledger.redis
        stored = await self.ledger.retrying(
            lambda: redis.eval(_READ, 2, order, self.rows_key, last)  # type: ignore[misc]
        )
        return [orjson.loads(row) for row in stored]

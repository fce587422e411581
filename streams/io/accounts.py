"""The account store: each account's state and input positions, written out before a commit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from faust.types import TP

from streams.clock import DAY, format_time
from streams.domain.state import AccountState
from streams.io import metrics
from streams.io.background import give_way, in_slices
from streams.io.delivery import Delivery, Record
from streams.io.records import (
    Account,
    Encoded,
    compress,
    decode,
    encode,
    encode_later,
    is_part,
    state_of,
)
from streams.io.topics import partition_for
from streams.settings import Settings

log = logging.getLogger(__name__)

# Decoded states of the accounts seen last, so that a busy account is not decoded per message:
# those of accounts saved before, or whose records take CACHE_MIN_BYTES or more. An account
# saved for the first time is not kept: a burst of new accounts seen once (a backfill, a
# migration) would fill the cache with states of 5 KiB or more that are never read again.
STATE_CACHE_ACCOUNTS = 10_000
CACHE_MIN_BYTES = 2048
# Changed accounts kept unsaved at most; more are saved at once. Bounds the memory they hold
# and the burst of changelog writes at a commit.
UNSAVED_ACCOUNTS = 2_500
ACCOUNTS_TABLE = "accounts"
SAVE_SLICE = 32  # accounts saved between turns of the event loop
SUMMARY_SLICE = 500  # stored states summarized between turns of the event loop
# The changelog's producer batches: a commit's account states in a few produce requests.
CHANGELOG_BATCH_BYTES = 256 * 1024
CHANGELOG_LINGER_MS = 5


async def summarize(
    items: Iterable[tuple[bytes, bytes]],
) -> list[tuple[int, float | None, dict[str, float]]]:
    """(size, clock, {trigger: published at}) of each account in the table's (key, value)
    items, its size that of all its records.

    In slices: 100,000 accounts with a month of history take about 0.6 s to decode.
    """
    heads: dict[bytes, bytes] = {}
    part_bytes: dict[bytes, int] = {}
    for key, value in items:
        if is_part(key):
            account_key = key.partition(b"\xff")[0]
            part_bytes[account_key] = part_bytes.get(account_key, 0) + len(value)
        else:
            heads[key] = value
    return [
        (len(value) + part_bytes.get(key, 0), *AccountState.summary(state_of(value)))
        async for key, value in in_slices(heads.items(), SUMMARY_SLICE)
    ]


class UnpublishedState(Exception):
    """A save found an account whose records failed to go out: its state is not written."""


class AccountStore:
    """The accounts of this worker's input partitions, one value each in the `accounts` table.

    A changed account stays unsaved until just before Faust commits input offsets: it is
    encoded and sent to the changelog once per commit, not once per message.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        delivery: Delivery,
        after_save: Callable[[list[AccountState]], Awaitable[None]] | None = None,
    ) -> None:
        self.partitions = settings.topic_partitions
        # given the states of the accounts each save wrote, once they are on the changelog
        self.after_save = after_save
        self.inputs = {settings.topic_events, settings.repartition_topic}
        self.delivery = delivery
        # account key -> (the value last written to the table, that value decoded). An
        # entry is used only while the table still holds that very object: after a
        # rebalance or a recovery the table holds another, and the account is decoded anew.
        self.cached: OrderedDict[bytes, tuple[bytes | None, Account]] = OrderedDict()
        self.unsaved: dict[bytes, Account] = {}  # changed since the table was last written
        self.saving: dict[bytes, Account] = {}  # being written meanwhile
        self.save_lock = asyncio.Lock()
        self.publishing: bytes | None = None  # the account whose records the agent is sending
        self._publish_acked: asyncio.Future[None] | None = None  # a save waits for them
        # What one record, and all the records of one account, may take; the record limit
        # lowered at start-up to the broker's when it is smaller (streams.worker).
        self.message_max_bytes = settings.message_max_bytes
        self.account_max_bytes = settings.account_max_bytes
        self.over_limit: set[bytes] = set()  # accounts already reported over their limits
        # The table's changelog has a producer of its own: the burst of state writes at a
        # commit would hold up, in Faust's producer, the signals sent behind it.
        self.changelog_producer = app.transport.create_producer()
        self.changelog_producer.max_batch_size = CHANGELOG_BATCH_BYTES
        self.changelog_producer.linger_ms = CHANGELOG_LINGER_MS
        app.add_dependency(self.changelog_producer)  # started and stopped with the app
        self.table = app.Table(
            ACCOUNTS_TABLE,
            default=None,
            partitions=self.partitions,
            key_type=bytes,  # bytes types make Faust use the raw codec, in and out
            value_type=bytes,
            help="Each account's input positions and state: a compressed head, and parts "
            "for a large account's users (streams.io.records)",
            extra_topic_configs={"max.message.bytes": str(settings.message_max_bytes)},
        )

    def load(self, account_id: str, account_key: bytes) -> Account:
        """The account: as last changed here, or as the table holds it."""
        unsaved = self.unsaved.get(account_key) or self.saving.get(account_key)
        if unsaved is not None:
            return unsaved
        stored = self.table.get(account_key)
        cached = self.cached.get(account_key)
        if cached is not None and stored is cached[0]:
            self.cached.move_to_end(account_key)
            return cached[1]
        if not stored:
            return Account(AccountState(account_id), {})
        return decode(stored, self.table.data.get, account_key)

    async def changed(self, account_key: bytes, account: Account) -> None:
        """Keep a changed account to save at the next commit (at once when too many wait)."""
        self.unsaved[account_key] = account
        if len(self.unsaved) >= UNSAVED_ACCOUNTS:
            await self.save()

    async def save(self) -> None:
        """Write the accounts changed since the last save to the table and its changelog.

        Called just before Faust flushes its producer and commits input offsets: the state
        on the changelog is never behind a committed offset. The changelog records go to
        their own producer, not through Faust's send buffer, whose backlog would hold up the
        agent (and every signal) until it drained; they are acked before this returns. The
        agent goes on meanwhile, with the right of way (streams.io.background).
        """
        async with self.save_lock:
            self.saving, self.unsaved = self.unsaved, {}
            records: list[Record] = []
            saved: list[AccountState] = []
            accounts = list(self.saving.items())
            limits = self.message_max_bytes, self.account_max_bytes
            for first in range(0, len(accounts), SAVE_SLICE):
                started = time.perf_counter()
                later: list[tuple[bytes, Account, bytes]] = []  # heads to compress
                for account_key, account in accounts[first : first + SAVE_SLICE]:
                    if account_key == self.publishing:
                        await self._published()
                    if account_key not in self.saving:
                        continue  # its partition was revoked meanwhile (forget)
                    saved.append(account.state)  # (its scorecard row, whether or not it fits)
                    head = encode_later(account, account_key, *limits)
                    if head is None:
                        encoded = encode(account, account_key, *limits)
                        self._store(account_key, account, encoded, records)
                    else:
                        later.append((account_key, account, head))
                worked = time.perf_counter() - started
                # the agent goes on meanwhile; zlib lets go of the GIL while it compresses
                heads = await asyncio.to_thread(list, map(compress, [head for *_, head in later]))
                started = time.perf_counter()
                for (account_key, account, _), head in zip(later, heads, strict=True):
                    if account_key in self.saving:  # not revoked meanwhile
                        encoded = Encoded(head, {}, size=len(head))
                        self._store(account_key, account, encoded, records)
                await give_way(worked + time.perf_counter() - started)
            await self.delivery.deliver(records, self._send_changelog)
            if self.after_save is not None:
                await self.after_save(saved)
            self.saving = {}

    def publishing_started(self, account_key: bytes) -> None:
        """Call before an account's signals, decisions and outcome records are sent: its
        state, changed already, is not saved until they are acked (publishing_done)."""
        self.publishing = account_key

    def publishing_done(self, error: BaseException | None = None) -> None:
        """Call when the account's records are acked, or with the error that stopped them:
        a save waiting for them then fails, and no offset is committed past them."""
        self.publishing = None
        waiting, self._publish_acked = self._publish_acked, None
        if waiting is None:
            return
        if error is None:
            waiting.set_result(None)
        else:
            waiting.set_exception(
                UnpublishedState(f"an account's records were not sent: {error!r}")
            )

    async def _published(self) -> None:
        """Wait until the account being published is done: a state saved, and offsets
        committed, while its records were unacked would say "published" after a crash
        that lost them, and its events would not be read again."""
        if self._publish_acked is None:
            self._publish_acked = asyncio.get_running_loop().create_future()
        await self._publish_acked

    def _store(
        self, account_key: bytes, account: Account, encoded: Encoded, records: list[Record]
    ) -> None:
        """Put an account's records in the table, and their changelog records in `records`."""
        if encoded.dropped_before is not None or not encoded.fits:
            self._over_limit(account, account_key, encoded)
        if not encoded.fits:
            # kept in memory as it is: the table's value, if any, is older
            self.cached[account_key] = (self.table.data.get(account_key), account)
            return
        changelog = self.table.changelog_topic
        home = partition_for(account_key, self.partitions)
        saved_before = account_key in self.table.data
        for key, value in (*encoded.parts.items(), (account_key, encoded.head)):
            self.table.data[key] = value
            records.append((changelog, key, value, home))
        for key in encoded.stale:
            self.table.data.pop(key, None)
            records.append((changelog, key, None, home))
        if saved_before or encoded.size >= CACHE_MIN_BYTES:
            self._cache(account_key, encoded.head, account)
        else:
            self.cached.pop(account_key, None)

    def _cache(self, account_key: bytes, head: bytes, account: Account) -> None:
        """Keep a saved account's decoded state beside the head just written."""
        self.cached[account_key] = (head, account)
        self.cached.move_to_end(account_key)
        if len(self.cached) > STATE_CACHE_ACCOUNTS:
            self.cached.popitem(last=False)

    def _over_limit(self, account: Account, account_key: bytes, encoded: Encoded) -> None:
        """Count an account whose state did not fit its limits, and say so once per account."""
        outcome = "not_saved" if not encoded.fits else "history_dropped"
        metrics.STATE_OVER_LIMIT.labels(outcome).inc()
        if account_key in self.over_limit:
            return
        self.over_limit.add(account_key)
        state = account.state
        if encoded.fits:
            log.warning(
                "account %s: state over its limits (%d bytes a record, %d an account): user "
                "history before %s dropped, %d users kept",
                state.account_id,
                self.message_max_bytes,
                self.account_max_bytes,
                format_time((encoded.dropped_before or 0) * DAY)[:10],
                len(state.users),
            )
        else:
            log.error(
                "account %s: the account-wide part of its state (%d bytes) is over the %d bytes "
                "a record may take: its changes are not saved",
                state.account_id,
                len(encoded.head),
                self.message_max_bytes,
            )

    def forget(self, revoked: Iterable[TP]) -> None:
        """Drop the unsaved accounts of input partitions taken away. Their offsets were not
        committed after those changes, so the partitions' next owner reads them again."""
        partitions = {tp.partition for tp in revoked if tp.topic in self.inputs}
        for unsaved in (self.unsaved, self.saving):
            revoked_keys = [
                key for key in unsaved if partition_for(key, self.partitions) in partitions
            ]
            for account_key in revoked_keys:
                del unsaved[account_key]
                self.cached.pop(account_key, None)

    async def summaries(self) -> list[tuple[int, float | None, dict[str, float]]]:
        """(size, clock, {trigger: published at}) of every account this worker holds."""
        return await summarize(list(self.table.data.items()))

    async def _send_changelog(self, record: Record) -> Any:
        topic, key, value, partition = record
        return await self.changelog_producer.send(
            topic.get_topic_name(), key, value, partition, None, None
        )

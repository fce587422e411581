"""The account store's values and the shared per-account bookkeeping, without a broker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import zlib
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from faust.types import TP
from scenario import (
    SHIPPED_RULES,
    account,
    active,
    events,
    invite,
    run,
    seat,
    signals,
)

from streams.app import new_faust_app
from streams.domain.account import apply_events
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.events import Event
from streams.io.accounts import AccountStore, UnpublishedState, summarize
from streams.io.delivery import Delivery
from streams.io.records import Account, decode, encode
from streams.io.topics import partition_for
from streams.settings import Settings

POSITIONS = {0: (41, 0), 3: (7, 2)}
LIMIT = 1_048_576


def seat_history() -> list[Event]:
    return events(
        account(0, seat_limit=10, segment="mid_market"),
        *[seat(0, f"u{n}") for n in range(9)],
        *[invite(1 + n / 10, "u1") for n in range(5)],
    )


def busy_state() -> AccountState:
    state = AccountState("acme")
    assert signals(run(seat_history(), state=state)) != []
    return state


def stored_value(account: Account, key: bytes = b"acme") -> bytes:
    return encode(account, key, limit=LIMIT, budget=LIMIT).head


def test_a_value_holds_the_positions_beside_the_state_compressed() -> None:
    state = busy_state()

    value = stored_value(Account(state, dict(POSITIONS)))
    restored = decode(value, {}.get, b"acme")

    assert zlib.decompress(value) == b'["account",1,[0,41,0,3,7,2],0,' + state.to_bytes() + b"]"
    assert restored.positions == POSITIONS
    assert restored.state.to_bytes() == state.to_bytes()
    assert decode(stored_value(Account(AccountState("new"), {})), {}.get, b"new").positions == {}


def test_a_value_stored_by_version_3_is_read_with_its_positions() -> None:
    state = busy_state()
    version_3 = b"[3,[0,41,0,3,7,2]," + state.to_bytes() + b"]"

    restored = decode(version_3, {}.get, b"acme")

    assert restored.positions == POSITIONS
    assert restored.state.to_bytes() == state.to_bytes()


# busy_state() as stored by the detector before contract v2 (value 3, state 3)
VALUE_3 = (Path(__file__).parent / "data" / "account-value-v3.json").read_bytes().strip()
STATE_3_FIELDS = orjson.loads(VALUE_3)[2][1:]


def test_a_value_stored_before_contract_v2_is_read_and_goes_on_as_the_same_account() -> None:
    now = busy_state()

    restored = decode(VALUE_3, {}.get, b"acme")

    assert restored.positions == POSITIONS
    old, new = restored.state, now
    assert (old.now, old.seats, old.users, old.usage_limits) == (
        new.now,
        new.seats,
        new.users,
        new.usage_limits,
    )
    assert {t: (m.level, m.published_at) for t, m in old.triggers.items()} == {
        t: (m.level, m.published_at) for t, m in new.triggers.items()
    }
    assert old.primary is not None and new.primary is not None
    assert old.primary.signal["signal_id"] == new.primary.signal["signal_id"]
    assert old.primary.detected == new.primary.detected
    # the same events after it lead to the same signals as for the account never stored
    later = events(seat(40, "u9"), active(41, "u2"), invite(42, "u3"), prefix="later")
    assert signals(run(later, state=old)) == signals(run(later, state=new))


def test_a_value_stored_by_version_2_is_read_with_its_positions() -> None:
    version_2 = orjson.dumps([2, *STATE_3_FIELDS, [[0, 41, 0], [3, 7, 2]]])

    restored = decode(version_2, {}.get, b"acme")

    assert restored.positions == POSITIONS
    assert restored.state.to_bytes() == decode(VALUE_3, {}.get, b"acme").state.to_bytes()
    assert len(stored_value(restored)) < len(version_2)  # the stored size does not grow


def test_a_value_stored_by_version_1_is_read_with_no_positions() -> None:
    version_1 = orjson.dumps([1, *STATE_3_FIELDS])

    restored = decode(version_1, {}.get, b"acme")

    assert restored.positions == {}
    assert restored.state.to_bytes() == decode(VALUE_3, {}.get, b"acme").state.to_bytes()


def test_a_message_at_or_below_the_position_applied_is_a_reread() -> None:
    held = Account(AccountState("acme"), {})

    assert held.advance(0, (41, 0))
    assert not held.advance(0, (41, 0))  # the same message again
    assert not held.advance(0, (40, 5))
    assert held.advance(0, (41, 1))  # the next part of a forwarded message
    assert held.advance(3, (2, 0))  # another input partition has positions of its own
    assert held.positions == {0: (41, 1), 3: (2, 0)}


def test_summaries_read_values_of_every_version() -> None:
    values = [
        stored_value(Account(busy_state(), dict(POSITIONS))),
        VALUE_3,
        orjson.dumps([2, *STATE_3_FIELDS, [[0, 41, 0]]]),
        orjson.dumps([1, *STATE_3_FIELDS]),
    ]

    rows = asyncio.run(summarize([(b"a%d" % n, value) for n, value in enumerate(values)]))

    assert len({(clock, tuple(published)) for _, clock, published in rows}) == 1
    assert [size for size, _, _ in rows] == [len(value) for value in values]


def test_apply_events_counts_duplicates_late_events_and_types() -> None:
    history = events(account(10), active(10, "u1"), seat(10, "u2"))
    again = events(active(10, "u1"), prefix="e")[0]  # e1 again: a duplicate of the update
    late = events(active(8, "u3"), prefix="late")[0]  # two days behind the account's clock
    state = AccountState("acme")

    applied = apply_events(Detector(SHIPPED_RULES), state, [*history, again, late])

    assert len(applied.outcomes) == 5
    assert applied.duplicates == 1 and applied.late == 1 and applied.changed
    assert applied.by_type == {"account_updated": 1, "user_active": 2, "seat_assigned": 1}
    only_duplicates = apply_events(Detector(SHIPPED_RULES), state, history)
    assert only_duplicates.duplicates == 3 and not only_duplicates.changed


class KeptRecords:
    """A delivery that keeps what the store sends instead of sending it to a broker."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def deliver(self, records: list[Any], send: Any = None) -> list[Any]:
        self.records.extend(records)
        return []


def test_a_new_account_is_not_kept_decoded_until_it_comes_back(tmp_path: Path) -> None:
    """A burst of new accounts seen once must not fill the cache of decoded states; an
    account that changes again after its first save is kept, and each load reads the state
    last saved."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path)
    sent = KeptRecords()
    store = AccountStore(new_faust_app(settings), settings, cast(Delivery, sent))
    key = b"acct-0"

    history = seat_history()

    async def change_and_save(load: Account, new: list[Event]) -> Account:
        assert apply_events(Detector(SHIPPED_RULES), load.state, new).changed
        await store.changed(key, load)
        await store.save()
        return load

    first = asyncio.run(change_and_save(store.load("acct-0", key), history[:3]))
    assert len(sent.records) == 1 and key not in store.cached
    second = store.load("acct-0", key)
    assert second is not first  # decoded from the saved value
    assert second.state.to_bytes() == first.state.to_bytes()

    asyncio.run(change_and_save(second, history[3:6]))
    assert store.load("acct-0", key) is second  # saved before: kept decoded


def kept_store(tmp_path: Path) -> tuple[AccountStore, KeptRecords, Settings]:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path)
    sent = KeptRecords()
    return AccountStore(new_faust_app(settings), settings, cast(Delivery, sent)), sent, settings


async def changed_account(store: AccountStore, key: bytes) -> Account:
    """The account of `key` with the seat history applied, kept to save."""
    account = store.load(key.decode(), key)
    apply_events(Detector(SHIPPED_RULES), account.state, seat_history())
    await store.changed(key, account)
    return account


def test_an_account_changed_while_its_save_is_compressed_is_saved_as_it_was_then_and_again(
    tmp_path: Path,
) -> None:
    """The agent goes on while heads are compressed: the table gets the state as the save
    found it, and the change made meanwhile waits for the next save."""
    store, sent, _ = kept_store(tmp_path)
    key = b"acct-0"
    history = seat_history()
    detector = Detector(SHIPPED_RULES)

    async def scenario() -> tuple[bytes, bytes]:
        account = store.load("acct-0", key)
        apply_events(detector, account.state, history[:3])
        await store.changed(key, account)
        found = encode(
            decode(stored_value(account, key), {}.get, key), key, limit=LIMIT, budget=LIMIT
        ).head

        async def meanwhile() -> None:
            again = store.load("acct-0", key)
            assert apply_events(detector, again.state, history[3:]).changed
            await store.changed(key, again)

        task = asyncio.create_task(meanwhile())
        await store.save()
        await task
        first = store.table.data[key]
        assert first == found
        assert key in store.unsaved
        await store.save()
        return first, store.table.data[key]

    first, second = asyncio.run(scenario())
    first_state, second_state = (decode(v, {}.get, key).state.to_bytes() for v in (first, second))
    assert second_state != first_state
    assert second_state == store.load("acct-0", key).state.to_bytes()
    assert [record[2] for record in sent.records] == [first, second]


def test_an_account_whose_records_are_being_published_is_saved_only_once_they_are_acked(
    tmp_path: Path,
) -> None:
    """A commit's save runs beside the agent: a state that says "published" must never reach
    the changelog while the records it published are unacked, or a crash would lose them
    (and the events that led to them would not be read again)."""
    store, sent, _ = kept_store(tmp_path)
    key = b"acct-0"
    history = seat_history()
    detector = Detector(SHIPPED_RULES)

    async def scenario() -> tuple[list[Any], bytes]:
        account = store.load("acct-0", key)
        apply_events(detector, account.state, history[:3])
        await store.changed(key, account)
        # the agent's next message for the account: applied, its records on their way
        again = store.load("acct-0", key)
        assert apply_events(detector, again.state, history[3:]).changed
        published = again.state.to_bytes()
        store.publishing_started(key)
        save = asyncio.create_task(store.save())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(save), 0.5)
        written_while_unacked = list(sent.records)
        store.publishing_done()  # the broker acked them
        await save
        return written_while_unacked, published

    written_while_unacked, published = asyncio.run(scenario())
    assert written_while_unacked == []
    assert decode(store.table.data[key], {}.get, key).state.to_bytes() == published
    assert [record[1] for record in sent.records] == [key]


def test_a_save_waiting_for_records_that_fail_to_go_out_fails_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store, sent, _ = kept_store(tmp_path)
    key = b"acct-0"

    async def scenario() -> None:
        await changed_account(store, key)
        store.publishing_started(key)
        save = asyncio.create_task(store.save())
        await asyncio.sleep(0)
        store.publishing_done(asyncio.CancelledError())  # the worker stopped mid-send
        await save

    with pytest.raises(UnpublishedState):
        asyncio.run(scenario())
    assert key not in store.table.data
    assert sent.records == []


def test_an_account_whose_partition_is_revoked_while_its_save_is_compressed_is_not_written(
    tmp_path: Path,
) -> None:
    store, sent, settings = kept_store(tmp_path)
    key = b"acct-0"

    async def scenario() -> None:
        await changed_account(store, key)

        async def revoke() -> None:
            partition = partition_for(key, settings.topic_partitions)
            store.forget([TP(settings.topic_events, partition)])

        task = asyncio.create_task(revoke())
        await store.save()
        await task

    asyncio.run(scenario())
    assert key not in store.table.data
    assert sent.records == []


def test_the_store_writes_a_head_that_fits_only_compressed_and_not_one_over_the_limit(
    tmp_path: Path,
) -> None:
    """A small account whose JSON is over a record's limit is still saved when it fits
    compressed; one over the limit even compressed is not written at all."""
    store, sent, _ = kept_store(tmp_path)
    store.message_max_bytes = 65_536
    fits = Account(busy_state(), {})
    fits.state.departments = {f"department-{n:06d}": float(n) for n in range(5_000)}
    over = Account(busy_state(), {})
    names = (hashlib.sha512(b"%d" % n).hexdigest() for n in range(3_000))
    over.state.departments = {name: float(n) for n, name in enumerate(names)}
    assert len(fits.state.to_bytes()) > 65_536

    async def save() -> None:
        await store.changed(b"fits", fits)
        await store.changed(b"over", over)
        await store.save()

    asyncio.run(save())

    assert b"over" not in store.table.data
    assert [record[1] for record in sent.records] == [b"fits"]
    assert len(store.table.data[b"fits"]) <= 65_536
    restored = decode(store.table.data[b"fits"], {}.get, b"fits").state
    assert restored.departments == fits.state.departments

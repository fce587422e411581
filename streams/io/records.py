"""An account's table records: a compressed head, and parts holding a large account's users."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain

import orjson

from streams.domain.state import AccountState

# An account with more users than this keeps its per-user entries (users, seats, gate users,
# workflow runs) and its dedup memory in parts beside its head, about this many users to a
# part: a busy large account rewrites the few parts its events touched, not all its users.
PART_USERS = 256
MAX_PARTS = 4096  # the most parts an account is split into: bounds the table reads of a load
# zlib level 1: 27 bytes a user for 0.8 us a user; level 6 saves 9 % for 4-10 times the time
COMPRESS_LEVEL = 1
# What a record takes on the wire beside its key and value (record and batch headers)
RECORD_OVERHEAD = 512
# Each record is zlib-compressed JSON whose first two elements are its kind and the version
# of that record layout, its own (the state inside a head carries the state's version):
#   head: ["account", 1, [partition, offset, part, ...], parts, state]
#   part: ["part", 2, users, seats, gate_users, seen, workflow_users] (1: without the last)
# Values written before were uncompressed JSON starting with "[": "[3," + positions + "," +
# state + "]", and before that the state alone (versions 1 and 2; 2 with the positions last).
HEAD = b'["account",1,'
LEGACY_POSITIONS = b"[3,"
Position = tuple[int, int]  # (offset, part) of an input message; part: of a forwarded one
NOT_READ: Position = (-1, -1)


class Account:
    """An account's state, and beside it the input positions its events were read up to.

    The table's changelog runs ahead of the committed input offsets, so after a crash or a
    rebalance the next owner reads again messages the restored state already holds: at or
    below the position kept for their input partition, they are skipped.
    """

    __slots__ = ("state", "positions", "parts", "written", "members")

    def __init__(self, state: AccountState, positions: dict[int, Position], parts: int = 0) -> None:
        self.state = state
        self.positions = positions  # input partition -> last position applied
        self.parts = parts  # parts its per-user entries are stored in (0: in the head)
        # part -> (digest of its content, size of its record) as last stored
        self.written: dict[int, tuple[bytes, int]] = {}
        # part -> the user ids and event keys filed in it (some perhaps gone since): a save
        # rebuilds only the parts of the entries the state says were touched
        self.members: list[tuple[set[str], set[int]]] = []

    def advance(self, partition: int, position: Position) -> bool:
        """Note the input message at `position` of `partition` as applied to this account;
        False when it already was (read again)."""
        if position <= self.positions.get(partition, NOT_READ):
            return False
        self.positions[partition] = position
        return True


@dataclass(slots=True)
class Encoded:
    """An account's records to write: its head, and its parts changed since last written."""

    head: bytes
    parts: dict[bytes, bytes]  # table key -> value
    stale: list[bytes] = field(default_factory=list)  # keys of the parts of an older split
    size: int = 0  # bytes of all the account's records
    dropped_before: int | None = None  # day before which user history was dropped to fit
    fits: bool = True  # False: the head alone is over the limit, nothing is written


def part_key(account_key: bytes, parts: int, part: int) -> bytes:
    """The table key of one of an account's parts. 0xFF never occurs in UTF-8, so no
    account's key is ever a part's."""
    return b"%s\xff%d/%d" % (account_key, parts, part)


def is_part(key: bytes) -> bool:
    return b"\xff" in key


def parts_for(users: int) -> int:
    """The parts an account of `users` users is split into: a power of two, or 0 (small)."""
    parts = 0 if users <= PART_USERS else 1 << ((users - 1) // PART_USERS).bit_length()
    return min(parts, MAX_PARTS)


def encode(account: Account, account_key: bytes, limit: int, budget: int) -> Encoded:
    """The account's records, each at most `limit` bytes on the wire and at most `budget`
    together. What does not fit costs the oldest user history first; a head that does not
    fit alone is not written (fits=False).

    The parts whose content is as last written are left out. Parts go before the head, so
    that a head never names parts not yet written.
    """
    state = account.state
    room = _room(limit, account_key)
    dropped_before = None
    # dropping users never folds the seats and the dedup memory back into the head
    least = max(account.parts, parts_for(len(state.users)))
    while True:
        parts, digests, changed, head, fits = _split(account, least, room)
        kept = account.written if parts == account.parts else {}
        sizes = {part: kept[part][1] for part in kept} | {
            part: len(value) for part, value in changed.items()
        }
        size = len(head) + sum(sizes.values())
        if len(head) > room and parts > 0:
            return Encoded(head, {}, size=size, dropped_before=dropped_before, fits=False)
        if fits and size <= budget:
            break
        if not state.users:
            if fits:
                break  # over the budget with no user history left: the rest is not history
            return Encoded(head, {}, size=size, dropped_before=dropped_before, fits=False)
        largest = max(map(len, changed.values()), default=len(head))
        dropped_before = _drop_oldest(state, 1 - 1 / max(size / budget, largest / room))
    stale = []
    if account.parts and parts != account.parts:
        stale = [part_key(account_key, account.parts, part) for part in range(account.parts)]
    account.written = {
        part: (digests[part], length) if part in digests else kept[part]
        for part, length in sizes.items()
    }
    account.parts = parts
    # what changes until the next save, for a large account's parts; a small one has none
    state.touched = set() if parts else None
    values = {part_key(account_key, parts, part): value for part, value in changed.items()}
    return Encoded(head, values, stale, size, dropped_before)


def _split(
    account: Account, least: int, room: int
) -> tuple[int, dict[int, bytes], dict[int, bytes], bytes, bool]:
    """(parts, digest of each part rebuilt, changed parts compressed, head, whether all fit),
    in the fewest parts (at least `least`) whose records each fit in `room` bytes."""
    parts = least
    while True:
        rebuilt = _rebuild(account, parts)
        digests = {part: _digest(content) for part, content in rebuilt.items()}
        kept = account.written if parts == account.parts else {}
        changed = {
            part: compress(content)
            for part, content in rebuilt.items()
            if part not in kept or kept[part][0] != digests[part]
        }
        head = _head(account, parts)
        if parts == 0:
            fits = len(head) <= room
        else:
            fits = all(len(value) <= room for value in changed.values())
        if fits or parts >= MAX_PARTS:
            return parts, digests, changed, head, fits
        parts = max(1, parts * 2)


def _rebuild(account: Account, parts: int) -> dict[int, bytes]:
    """The JSON of each part that may have changed: all of them after a new split, a
    restore or a prune; else those of the entries touched since the last save."""
    state = account.state
    if parts == 0:
        return {}
    mask = parts - 1
    if state.touched is None or parts != account.parts or len(account.members) != parts:
        account.members = [(set(), set()) for _ in range(parts)]
        for user in chain(state.users, state.seats, state.gate_users, state.workflow_users):
            account.members[_part_of(user, mask)][0].add(user)
        for key in state.seen:
            account.members[key & mask][1].add(key)
        dirty: Iterable[int] = range(parts)
    else:
        dirty = set()
        for entry in state.touched:
            if isinstance(entry, int):
                part = entry & mask
                account.members[part][1].add(entry)
            else:
                part = _part_of(entry, mask)
                account.members[part][0].add(entry)
            dirty.add(part)
    return {part: _content(state, *account.members[part]) for part in dirty}


def _content(state: AccountState, users: set[str], keys: set[int]) -> bytes:
    """One part's JSON: its users' entries and its dedup entries, in id order."""
    ids = sorted(users)
    return orjson.dumps(
        [
            "part",
            2,
            {user: state.users[user] for user in ids if user in state.users},
            [user for user in ids if user in state.seats],
            {user: state.gate_users[user] for user in ids if user in state.gate_users},
            [(key, state.seen[key]) for key in sorted(keys) if key in state.seen],
            {user: state.workflow_users[user] for user in ids if user in state.workflow_users},
        ]
    )


def encode_later(account: Account, account_key: bytes, limit: int, budget: int) -> bytes | None:
    """The head `encode` would write, not yet compressed, for an account that keeps its users
    in its head and fits its limits however its head compresses: compressed later by
    `compress`, away from the event loop. None: any other account (`encode` it).

    The account is noted as written, as `encode` notes it.
    """
    state = account.state
    if account.parts or parts_for(len(state.users)):
        return None
    value = _head_json(account, 0)
    # zlib's worst case is 0.03 % and 13 bytes over the input (compressBound)
    bound = len(value) + len(value) // 1000 + 64
    if bound > _room(limit, account_key) or bound > budget:
        return None
    account.written = {}
    state.touched = None
    return value


def _room(limit: int, account_key: bytes) -> int:
    """What one of the account's records may take, its key and framing left out."""
    return limit - RECORD_OVERHEAD - len(account_key) - 16  # 16: a part key's suffix


def compress(value: bytes) -> bytes:
    return zlib.compress(value, COMPRESS_LEVEL)


def _head(account: Account, parts: int) -> bytes:
    return compress(_head_json(account, parts))


def _head_json(account: Account, parts: int) -> bytes:
    positions = [
        n for partition, position in account.positions.items() for n in (partition, *position)
    ]
    state = account.state.to_bytes(per_user=parts == 0)
    return b"".join((HEAD, orjson.dumps(positions), b",%d," % parts, state, b"]"))


def _part_of(user: str, mask: int) -> int:
    return zlib.crc32(user.encode()) & mask


def _digest(content: bytes) -> bytes:
    return hashlib.blake2b(content, digest_size=16).digest()


def _drop_oldest(state: AccountState, share: float) -> int:
    """Drop at least `share` of the users, those last active longest ago first, whole days
    at a time; the first day kept."""
    days = sorted(record[0] for record in state.users.values())
    cutoff = days[min(len(days) - 1, max(0, int(share * len(days))))]
    if cutoff == days[0]:
        cutoff += 1
    state.drop_history_before(cutoff)
    return cutoff


def decode(value: bytes, stored: Callable[[bytes], bytes | None], account_key: bytes) -> Account:
    """The account a table value holds, as stored by any version; `stored` reads the table
    value of a part's key."""
    if value.startswith(b"["):
        return _decode_uncompressed(value)
    positions_json, parts, state_json = _head_fields(zlib.decompress(value))
    state = AccountState.from_bytes(state_json)
    account = Account(state, _positions(orjson.loads(positions_json)), parts)
    for part in range(parts):
        record = stored(part_key(account_key, parts, part))
        if record is None:
            continue  # written again at the next save: its digest is not known
        content = zlib.decompress(record)
        _, _, users, seats, gate_users, seen, *workflow_users = orjson.loads(content)
        state.workflow_users.update(*workflow_users)
        state.users.update(users)
        state.seats.update(seats)
        state.gate_users.update(gate_users)
        state.seen.update(map(tuple, seen))
        account.written[part] = (_digest(content), len(record))
    return account


def state_of(value: bytes) -> bytes:
    """The state's JSON in a table value (of a head: without its per-user entries)."""
    if value.startswith(LEGACY_POSITIONS):
        end = value.index(b"]", len(LEGACY_POSITIONS)) + 1
        return value[end + 1 : -1]
    if value.startswith(b"["):
        return value
    return _head_fields(zlib.decompress(value))[2]


def _head_fields(data: bytes) -> tuple[bytes, int, bytes]:
    """(positions JSON, parts, state JSON) of a head: the positions are a flat array of
    numbers (the first "]" ends them), the parts a number."""
    end = data.index(b"]", len(HEAD)) + 1
    comma = data.index(b",", end + 1)
    return data[len(HEAD) : end], int(data[end + 1 : comma]), data[comma + 1 : -1]


def _decode_uncompressed(value: bytes) -> Account:
    """An account as versions before the compressed records stored it."""
    if value.startswith(LEGACY_POSITIONS):
        end = value.index(b"]", len(LEGACY_POSITIONS)) + 1
        flat = orjson.loads(value[len(LEGACY_POSITIONS) : end])
    else:
        # once per account, when it is first read after an upgrade from version 1 or 2
        values = orjson.loads(value)
        flat = [n for stored in values[-1] for n in stored] if values[0] == 2 else []
    return Account(AccountState.from_bytes(state_of(value)), _positions(flat))


def _positions(flat: list[int]) -> dict[int, Position]:
    return {flat[n]: (flat[n + 1], flat[n + 2]) for n in range(0, len(flat), 3)}

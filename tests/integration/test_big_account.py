"""An account of 20,000 users among ordinary ones: detected, saved and restored by the worker."""

from __future__ import annotations

from typing import Any

import orjson
from builders import event, healthy_account, metrics_of, seats, values, wait_for_metric

BIG = "enterprise"
USERS = 20_000
ORDINARY = ["small-a", "small-b", "small-c"]
# the two users active every day, each day in this order
POWER_USERS = [f"{BIG}-u{USERS - 1:05d}", f"{BIG}-u{USERS // 3:05d}"]
BATCH = 500  # events a message, as a client sends them


def user(n: int) -> str:
    return f"{BIG}-u{n:05d}"


def big_account_history() -> list[dict[str, Any]]:
    """20,000 seated users (half the seat limit) over March 2026: each active on a day or
    two, two of them every day."""
    history = [healthy_account(BIG, seat_limit=2 * USERS)]
    for n in range(USERS):
        at = f"2026-03-01T{n // 60 % 24:02d}:{n % 60:02d}:00Z"
        department = {"department": "engineering" if n % 2 else "sales"}
        history.append(event("seat_assigned", BIG, at, user_id=user(n), properties=department))
    for day in range(2, 31):
        morning, later = f"2026-03-{day:02d}T09:00:00Z", f"2026-03-{day:02d}T10:00:00Z"
        active = [*range(day, USERS, 29), *range(day * 7, USERS, 290)]
        history.extend(event("user_active", BIG, morning, user_id=user(n)) for n in active)
        history.extend(event("user_active", BIG, later, user_id=power) for power in POWER_USERS)
    return history


def send_batches(kafka_io: Any, topic: str, account: str, history: list[dict[str, Any]]) -> None:
    for first in range(0, len(history), BATCH):
        batch = {"events": history[first : first + BATCH]}
        kafka_io.produce(topic, orjson.dumps(batch), key=account.encode(), flush=False)
    kafka_io.flush()


def signals_by_account(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for signal in values(records):
        found.setdefault(signal["account_id"], []).append(signal)
    return found


def test_a_20000_user_account_is_detected_saved_and_restored_beside_ordinary_ones(
    worker_factory, kafka_io
):
    worker = worker_factory()
    topic, signals_topic = worker.env["TOPIC_EVENTS"], worker.env["TOPIC_SIGNALS"]
    for account in ORDINARY[:2]:
        send_batches(kafka_io, topic, account, [healthy_account(account), *seats(account, 10)])
    send_batches(kafka_io, topic, BIG, big_account_history())
    last = ORDINARY[2]
    send_batches(kafka_io, topic, last, [healthy_account(last), *seats(last, 10)])

    def arrived(records: list[dict[str, Any]]) -> bool:
        found = signals_by_account(records)
        return all(account in found for account in ORDINARY) and BIG in found

    found = signals_by_account(kafka_io.consume(signals_topic, arrived, timeout=120))

    for account in ORDINARY:
        assert {s["trigger"] for s in found.get(account, [])} == {"seat_saturation"}, account
    before = found.get(BIG, [])
    assert {signal["trigger"] for signal in before} == {"power_user_emergence"}, worker.log_tail()
    first = before[0]["evidence"]
    assert (first["user_id"], first["active_days"]) == (POWER_USERS[0], 10)  # first to 10 days
    assert worker.process.poll() is None  # no crash
    assert "expansion_state_over_limit_total{" not in metrics_of(worker)
    assert worker.stop() == 0

    # After a restart: a new department needs the departments known for 30 days (in the
    # restored head), and the seat saturation the account's 20,000 seats (in its parts).
    restarted = worker_factory(like=worker)
    legal = {"department": "legal"}
    at = "2026-03-31T12:00:00Z"
    later = [
        *[event("user_active", BIG, at, user_id=user(n), properties=legal) for n in (1, 2)],
        event("account_updated", BIG, "2026-03-31T13:00:00Z", properties={"seat_limit": USERS}),
    ]
    send_batches(kafka_io, topic, BIG, later)

    def after_restart(records: list[dict[str, Any]]) -> bool:
        return len(signals_by_account(records).get(BIG, [])) >= len(before) + 2

    found = signals_by_account(kafka_io.consume(signals_topic, after_restart, timeout=60))
    big = {signal["trigger"]: signal for signal in found.get(BIG, [])[len(before) :]}
    assert list(big) == ["new_department", "seat_saturation"], restarted.log_tail()
    assert big["new_department"]["evidence"]["departments_known_since"].startswith("2026-03-01")
    assert big["seat_saturation"]["evidence"]["seats_in_use"] == USERS


def test_an_account_over_its_size_limit_drops_its_oldest_history_and_the_others_go_on(
    worker_factory, kafka_io
):
    worker = worker_factory(ACCOUNT_MAX_BYTES=150_000)
    topic, signals_topic = worker.env["TOPIC_EVENTS"], worker.env["TOPIC_SIGNALS"]
    send_batches(kafka_io, topic, BIG, big_account_history())
    for account in ORDINARY:
        send_batches(kafka_io, topic, account, [healthy_account(account), *seats(account, 10)])

    def arrived(records: list[dict[str, Any]]) -> bool:
        return all(account in signals_by_account(records) for account in ORDINARY)

    found = signals_by_account(kafka_io.consume(signals_topic, arrived, timeout=120))

    for account in ORDINARY:
        assert {s["trigger"] for s in found.get(account, [])} == {"seat_saturation"}, account
    assert BIG in found  # detected live as before; only what is stored is cut
    wait_for_metric(worker, 'expansion_state_over_limit_total{outcome="history_dropped"}')
    assert worker.process.poll() is None
    lines = [line for line in worker.log_path.read_text().splitlines() if "over its limits" in line]
    assert len(lines) == 1, worker.log_tail()
    assert f"account {BIG}: state over its limits" in lines[0] and "history before" in lines[0]


def test_a_topic_taking_smaller_messages_is_reported_at_start_up_in_one_line(
    worker_factory, kafka_io, unique_name
):
    signals = unique_name("signals")
    kafka_io.create_topics([signals], partitions=4, config={"max.message.bytes": "500000"})

    worker = worker_factory(TOPIC_SIGNALS=signals)

    log = worker.log_path.read_text().splitlines()
    lines = [line for line in log if "takes messages of at most" in line]
    assert len(lines) == 1, worker.log_tail()
    assert f"{signals} max.message.bytes 500000" in lines[0]
    assert "less than MESSAGE_MAX_BYTES=1048576" in lines[0]
    account = ORDINARY[0]
    topic = worker.env["TOPIC_EVENTS"]
    send_batches(kafka_io, topic, account, [healthy_account(account), *seats(account, 10)])
    found = kafka_io.consume(signals, lambda records: len(records) >= 1, timeout=60)
    assert [s["trigger"] for s in values(found)] == ["seat_saturation"]

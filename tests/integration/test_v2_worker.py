"""Contract v2 on the real worker: each new trigger published, each new gate logged, and the
backtest of the same input publishing the same signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from streams.backtest.replay import replay
from streams.rules import load
from streams.settings import ROOT

RULES_FILE = ROOT / "config" / "rules.yaml"
BASE = datetime(2026, 1, 5, tzinfo=UTC)
TEAM = ["projects", "tasks", "comments", "file_sharing", "search", "workflow_automation"]
NEW_TRIGGERS = {
    "workflow_expansion",
    "workflow_depth",
    "value_discovery",
    "renewal_window",
    "expansion_inquiry",
    "qbr_outcome",
    "stalled_pql",
}
NEW_REASONS = {"gated_low_utilization", "gated_low_adoption", "gated_support_rising", "gated_nps"}


def at(day: float) -> str:
    return (BASE + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")


def scenario() -> list[dict[str, Any]]:
    """One account per new trigger and per new gate, in time order per account."""
    out: list[dict[str, Any]] = []

    def emit(account: str, day: float, type_: str, user: str | None = None, **props: Any) -> None:
        event = {
            "event_id": f"{account}-{len(out)}",
            "type": type_,
            "account_id": account,
            "timestamp": at(day),
            "properties": props,
        }
        if user is not None:
            event["user_id"] = user
        out.append(event)

    def healthy(account: str, **props: Any) -> None:
        emit(
            account,
            0,
            "account_updated",
            activated_at=at(-90),
            health_score=90,
            mrr=1000,
            **props,
        )

    healthy("wf")
    for week in range(4):
        for user in ("u1", "u2"):
            for n in range(4):
                emit("wf", 7 * week + 0.5, "workflow_run", user, workflow=f"w{n}")
    healthy("depth")
    emit("depth", 1, "workflow_run", "u2", workflow="report", status="failed")
    for n in range(51):
        emit("depth", 1 + n * 0.1, "workflow_run", "u1", workflow="invoice-sync")
    healthy("vd", plan="team")
    for n, name in enumerate([*TEAM, "api_access", "shared_dashboards"]):
        emit("vd", 1 + n / 10, "feature_used", "u1", feature=name)
    healthy("ren", renewal_date=(BASE + timedelta(days=50)).date().isoformat())
    healthy("inq")
    emit("inq", 1, "external_signal", kind="expansion_inquiry", detail={"team": "finance"})
    healthy("qbr")
    emit("qbr", 1, "external_signal", kind="qbr_unmet_need", detail={"need": "sso"})
    healthy("stall")
    emit("stall", 1, "external_signal", kind="champion_promoted")
    emit("stall", 31, "user_active", "u1")
    healthy("g-util")
    for n in range(10):
        emit("g-util", 0, "seat_assigned", f"u{n}")
    for day in (20, 30, 35):
        emit("g-util", day, "user_active", "u1")
    emit("g-util", 35.5, "external_signal", kind="funding_round")
    healthy("g-adopt")
    emit("g-adopt", 1, "feature_used", "u1", feature="projects")
    emit("g-adopt", 2, "external_signal", kind="funding_round")
    healthy("g-support")
    emit("g-support", 10, "support_ticket")
    for n in range(2):
        emit("g-support", 40 + n / 10, "support_ticket", ticket_id=f"T-{n}")
    emit("g-support", 59.5, "external_signal", kind="funding_round")
    healthy("g-nps", nps=3)
    emit("g-nps", 1, "external_signal", kind="funding_round")
    return out


def test_the_worker_publishes_the_v2_triggers_and_logs_the_v2_gates_as_the_backtest_does(
    tmp_path: Path, worker_factory: Any, kafka_io: Any
) -> None:
    events = scenario()
    path = tmp_path / "v2.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    run = replay(path, [("shipped", load(RULES_FILE))]).runs[0]
    # (and the relationship_change that stalls)
    assert {s["trigger"] for s in run.signals} == {*NEW_TRIGGERS, "relationship_change"}
    assert {d.reason for d in run.decisions} == {*NEW_REASONS, "cooldown"}

    worker = worker_factory()
    env = worker.env
    for event in events:
        kafka_io.produce(
            env["TOPIC_EVENTS"], orjson.dumps(event), key=event["account_id"].encode(), flush=False
        )
    kafka_io.flush()
    signals = kafka_io.consume(
        env["TOPIC_SIGNALS"], until=lambda got: len(got) >= len(run.signals), timeout=120
    )
    decisions = kafka_io.consume(
        env["TOPIC_DECISIONS"], until=lambda got: len(got) >= len(run.decisions), timeout=30
    )

    published = [orjson.loads(r["value"]) for r in signals]
    assert {s["signal_id"]: {**s, "emitted_at": None} for s in published} == {
        s["signal_id"]: s for s in run.signals
    }, worker.log_tail()
    assert all(s["schema_version"] == 2 and s["account"] is not None for s in published)
    logged = [orjson.loads(r["value"]) for r in decisions]
    assert sorted(d["decision_id"] for d in logged) == sorted(d.decision_id for d in run.decisions)
    assert {d["reason"] for d in logged} == {*NEW_REASONS, "cooldown"}
    routes = {s["trigger"]: s["route"] for s in published}
    assert (routes["expansion_inquiry"], routes["qbr_outcome"], routes["stalled_pql"]) == (
        "csm",
        "sales",
        "csm",
    )

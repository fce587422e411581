"""The backtest: literal files in, replayed signals and measured figures out."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from scenario import RULES_FILE, SHIPPED_RULES, account, active, at, champion, seat

from streams.backtest import cli
from streams.backtest.measure import hints, measure
from streams.backtest.replay import (
    DecisionRecord,
    Expansion,
    Replay,
    Run,
    Skipped,
    load_outcomes,
    replay,
)
from streams.rules import TRIGGERS, load
from streams.simulate import cli as simulate


def day(text: str) -> int:
    return date.fromisoformat(text).toordinal() - date(1970, 1, 1).toordinal()


def line(obj: dict[str, Any], event_id: str, account_id: str = "acme") -> dict[str, Any]:
    """A scenario dict as the contract event it stands for."""
    obj = dict(obj)
    obj["timestamp"] = at(obj.pop("day"))
    return {"event_id": event_id, "account_id": account_id, **obj}


def write(path: Path, *lines: dict[str, Any] | bytes) -> Path:
    path.write_bytes(
        b"".join((raw if isinstance(raw, bytes) else orjson.dumps(raw)) + b"\n" for raw in lines)
    )
    return path


def tuned_rules(tmp_path: Path, levels: list[float]) -> Path:
    """The shipped rules with other seat_saturation levels."""
    data = yaml.safe_load(RULES_FILE.read_text())
    data["defaults"]["triggers"]["seat_saturation"]["levels"] = levels
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- replay ----------------------------------------------------------------------------------


def test_malformed_lines_are_reported_with_their_line_number_and_skipped(tmp_path: Path) -> None:
    good = line(account(0, seat_limit=5), "a1")
    bad_event = line(seat(1, "u2"), "s2")
    del bad_event["user_id"]
    batch = {"events": [line(seat(1, "u1"), "s1"), bad_event, line(seat(1, "u3"), "s3")]}
    events = write(
        tmp_path / "events.jsonl",
        good,
        b"{not json",
        b"",
        batch,
        {**line(seat(2, "u4"), "s4"), "timestamp": "yesterday"},
        {**line(seat(2, "u5"), "s5"), "type": "page_viewed"},
        line(seat(3, "u6"), "s6"),
    )
    seen: list[Skipped] = []
    result = replay(events, [("shipped", SHIPPED_RULES)], on_skip=seen.append)

    assert [(s.line, s.index, s.reason) for s in seen] == [
        (2, None, "not_json"),
        (4, 1, "schema"),
        (5, None, "timestamp"),
        (6, None, "unknown_type"),
    ]
    assert seen[1].describe("events.jsonl").startswith("events.jsonl:4 [event 1]: schema: user_id")
    assert result.skipped == seen
    assert result.skipped_by_reason == {
        "not_json": 1,
        "schema": 1,
        "timestamp": 1,
        "unknown_type": 1,
    }
    assert (result.lines, result.events) == (7, 4)
    assert result.activity == {"acme": {day("2024-05-01"), day("2024-05-02"), day("2024-05-04")}}


def test_events_replay_in_event_time_order_whatever_the_file_order(tmp_path: Path) -> None:
    # 2 of 2 seats: seat_saturation at its top level, at once
    acme = [
        line(account(0, seat_limit=2), "a1"),
        line(seat(1, "u1"), "s1"),
        line(seat(1.5, "u2"), "s2"),
    ]
    other = [line(account(0), "o1", account_id="other"), line(champion(2), "c1", "other")]
    in_order = replay(write(tmp_path / "sorted.jsonl", *acme, *other), [("r", SHIPPED_RULES)])
    shuffled = replay(
        write(tmp_path / "shuffled.jsonl", acme[2], *other, acme[0], acme[1]),
        [("r", SHIPPED_RULES)],
    )
    expected = [("acme", "seat_saturation", 1.0), ("other", "relationship_change", 1.0)]
    for result in (in_order, shuffled):
        assert sorted(
            (s["account_id"], s["trigger"], s["level"]) for s in result.runs[0].signals
        ) == (expected)
        assert sum(result.runs[0].late.values()) == 0
    assert (in_order.reordered, shuffled.reordered) == (0, 1)
    assert sorted(map(str, in_order.runs[0].signals)) == sorted(map(str, shuffled.runs[0].signals))


def test_a_signal_already_published_is_held_back_as_the_ledger_does(tmp_path: Path) -> None:
    # The same event again after the 24 h dedup window fires again, with the same signal_id.
    events = write(
        tmp_path / "events.jsonl",
        line(account(0), "a1"),
        line(champion(1), "x"),
        line(champion(20), "x"),
        line(champion(20.5), "x"),  # within 24 h of the last copy: a duplicate event
    )
    run = replay(events, [("shipped", SHIPPED_RULES)]).runs[0]
    assert [s["trigger"] for s in run.signals] == ["relationship_change"]
    assert sum(run.deduplicated.values()) == 1
    assert sum(run.duplicates.values()) == 1


def crm_history(tmp_path: Path) -> Path:
    """Three accounts signalled by a champion each, and what the CRM said became of them."""

    def outcome(day: float, stage: str, **more: Any) -> dict[str, Any]:
        return {"type": "expansion_outcome", "day": day, "properties": {"stage": stage, **more}}

    lines = []
    for account_id, answers in (
        ("acme", [outcome(3, "opportunity"), outcome(11, "won", expansion_mrr=400)]),
        ("beta", [outcome(2, "rejected", reason="no budget")]),
        ("gamma", [outcome(5, "opportunity"), outcome(9, "lost")]),
    ):
        history = [account(0, mrr=5000), champion(1), *answers]
        lines += [line(e, f"{account_id}{n}", account_id) for n, e in enumerate(history)]
    return write(tmp_path / "events.jsonl", *lines)


def test_the_events_own_outcomes_measure_each_trigger(tmp_path: Path) -> None:
    results = measure(replay(crm_history(tmp_path), [("shipped", SHIPPED_RULES)]), None)

    figures = results["runs"][0]["triggers"]["relationship_change"]
    assert figures["fires"] == 3
    assert figures["answers"] == {
        "stages": {"opportunity": 2, "won": 1, "lost": 1, "rejected": 1},
        "self_serve": 0,
        "opportunity_rate": 2 / 3,
        "close_rate": 0.5,
        "false_positive_rate": 1 / 3,
        "median_cycle_days": 10.0,
        "won_mrr": 400.0,
    }
    assert results["runs"][0]["routes"]["csm"]["answers"]["stages"]["won"] == 1
    assert results["runs"][0]["triggers"]["seat_saturation"]["answers"]["close_rate"] is None


def test_the_reports_show_the_outcome_figures_beside_todays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, report = crm_history(tmp_path), tmp_path / "report.html"
    assert cli.main([str(events), "--html", str(report)]) == 0
    out = capsys.readouterr().out
    table = out.split("== outcomes per trigger")[1].split("\n\n")[0]
    row = next(r.split() for r in table.splitlines() if r.startswith("relationship_change"))
    assert row[1:] == ["3", "2", "1", "1", "1", "66.7%", "50.0%", "33.3%", "10d", "$400"]
    html = report.read_text()
    assert "<h2>Outcomes per trigger</h2>" in html
    assert "<td>66.7%</td><td>50.0%</td><td>33.3%</td><td>10&nbsp;d</td><td>$400</td>" in html


def test_each_rules_file_gets_its_own_run_and_a_higher_threshold_fires_less(
    tmp_path: Path,
) -> None:
    # 9 of 10 seats held for 15 days: 0.9 under the shipped levels, nothing at 0.95
    events = write(
        tmp_path / "events.jsonl",
        line(account(0, seat_limit=10, mrr=1000), "a1"),
        *(line(seat(0.1, f"u{n}"), f"s{n}") for n in range(9)),
        *(line(active(14, f"u{n}"), f"d14-{n}") for n in range(9)),  # no churn risk
        line(active(15.5, "u1"), "d15"),
        line(account(30), "z1", account_id="zeta"),  # the data runs to 2024-05-31
    )
    tuned = load(tuned_rules(tmp_path, [0.95, 1.0]))
    result = replay(events, [("shipped", SHIPPED_RULES), ("tuned", tuned)])
    shipped, raised = result.runs
    assert [(s["trigger"], s["level"]) for s in shipped.signals] == [("seat_saturation", 0.9)]
    assert raised.signals == []
    figures = measure(result, [Expansion("acme", "seat_purchase", day("2024-05-30"))])
    by_run = [run["triggers"]["seat_saturation"] for run in figures["runs"]]
    assert [f["fires"] for f in by_run] == [1, 0]
    assert [f["coverage"] for f in by_run] == [1.0, 0.0]
    assert [f["median_lead_days"] for f in by_run] == [14, None]


# -- measuring -------------------------------------------------------------------------------


def _signal(account_id: str, trigger: str, when: str, route: str = "in_app") -> dict[str, Any]:
    return {
        "signal_id": f"{account_id}-{trigger}-{when}",
        "account_id": account_id,
        "trigger": trigger,
        "route": route,
        "detected_at": f"{when}T12:00:00.000Z",
    }


def _replay(signals: list[dict[str, Any]], decisions: list[DecisionRecord] = ()) -> Replay:  # type: ignore[assignment]
    """Four accounts with events from 2026-01-01 to 2026-06-30, and these results."""
    run = Run("rules.yaml", SHIPPED_RULES)
    run.signals = signals
    run.decisions = list(decisions)
    result = Replay("events.jsonl", [run])
    result.activity = {a: {day("2026-01-01"), day("2026-06-30")} for a in "abcd"}
    return result


EXPANSIONS = [
    Expansion("a", "seat_purchase", day("2026-02-09")),
    Expansion("b", "seat_purchase", day("2026-05-03")),  # 91 days after b's signal
    Expansion("c", "tier_upgrade", day("2026-06-01")),
    Expansion("d", "capacity_upgrade", day("2026-03-01")),  # no signal before it
    Expansion("e", "seat_purchase", day("2025-12-01")),  # before the events begin
]


def test_coverage_false_positives_lead_time_and_fire_rate_of_one_trigger() -> None:
    signals = [
        _signal("a", "seat_saturation", "2026-01-10"),
        _signal("a", "seat_saturation", "2026-01-20"),
        _signal("b", "seat_saturation", "2026-02-01", route="csm"),
        _signal("c", "seat_saturation", "2026-05-15"),  # less than 90 days before the end
    ]
    results = measure(_replay(signals), EXPANSIONS)
    figures = results["runs"][0]["triggers"]["seat_saturation"]
    assert (results["outcomes"], results["outcomes_in_span"]) == (5, 4)
    assert figures["fires"] == 4
    assert figures["accounts"] == 3
    # a (30 days after its first signal) and c (17 days); not b (91 days), not d (none)
    assert (figures["covered"], figures["outcomes"], figures["coverage"]) == (2, 4, 0.5)
    assert figures["lead_days"] == [17, 30]
    assert figures["median_lead_days"] == 23.5
    # a's two signals led to an expansion, b's did not; c's window is still open
    assert (figures["decided"], figures["false_positives"], figures["open"]) == (3, 1, 1)
    assert figures["false_positive_rate"] == pytest.approx(1 / 3)
    assert figures["fire_rate_by_quarter"] == {"2026Q1": 0.5, "2026Q2": 0.25}
    assert figures["fire_rate"] == 3 / 8
    assert figures["coverage_by_kind"] == {
        "capacity_upgrade": 0.0,
        "seat_purchase": 0.5,
        "tier_upgrade": 1.0,
    }
    assert figures["hints"] == ["fires>15%"]
    others = [results["runs"][0]["triggers"][t] for t in TRIGGERS if t != "seat_saturation"]
    assert all(f["fires"] == 0 and f["coverage"] == 0.0 for f in others)
    assert results["runs"][0]["any"]["coverage"] == 0.5


def test_the_same_figures_per_route() -> None:
    signals = [
        _signal("a", "seat_saturation", "2026-01-10"),
        _signal("b", "invite_surge", "2026-02-01", route="csm"),
        _signal("c", "usage_ceiling", "2026-05-15", route="sales"),
    ]
    routes = measure(_replay(signals), EXPANSIONS)["runs"][0]["routes"]
    assert {
        r: (f["fires"], f["covered"], f["false_positives"], f["open"]) for r, f in routes.items()
    } == {
        "in_app": (1, 1, 0, 0),
        "csm": (1, 0, 1, 0),
        "sales": (1, 1, 0, 1),
    }


def test_a_window_counts_its_last_day_and_no_more() -> None:
    signals = [
        _signal("a", "invite_surge", "2026-01-01"),
        _signal("b", "invite_surge", "2026-01-01"),
    ]
    truth = [
        Expansion("a", "seat_purchase", day("2026-04-01")),  # 90 days later
        Expansion("b", "seat_purchase", day("2026-04-02")),  # 91 days later
    ]
    figures = measure(_replay(signals), truth)["runs"][0]["triggers"]["invite_surge"]
    assert figures["lead_days"] == [90]
    assert (figures["decided"], figures["false_positives"]) == (2, 1)
    shorter = measure(_replay(signals), truth, window=30)["runs"][0]["triggers"]["invite_surge"]
    assert (shorter["covered"], shorter["false_positives"]) == (0, 2)


def test_decisions_are_counted_by_reason() -> None:
    def decided(
        reason: str, trigger: str = "seat_saturation", route: str = "csm"
    ) -> DecisionRecord:
        return DecisionRecord(f"{reason}-{trigger}", "a", trigger, route, reason, day("2026-01-05"))

    records = [
        decided("cooldown"),
        decided("cooldown"),
        decided("gated_health"),
        decided("gated_not_activated", route="in_app"),
        decided("collision", trigger="invite_surge"),
    ]
    run = measure(_replay([], records), [])["runs"][0]
    assert run["triggers"]["seat_saturation"]["decisions"] == {
        "gated": 2,
        "cooldown": 2,
        "collision": 0,
    }
    assert run["triggers"]["invite_surge"]["decisions"]["collision"] == 1
    assert run["routes"]["csm"]["decisions"] == {"gated": 1, "cooldown": 2, "collision": 1}
    assert run["any"]["decisions_by_reason"] == {
        "collision": 1,
        "cooldown": 2,
        "gated_health": 1,
        "gated_not_activated": 1,
    }


def test_without_outcomes_coverage_and_false_positives_are_unknown() -> None:
    figures = measure(_replay([_signal("a", "seat_saturation", "2026-01-10")]), None)
    seat_saturation = figures["runs"][0]["triggers"]["seat_saturation"]
    assert seat_saturation["coverage"] is None
    assert seat_saturation["false_positive_rate"] == 1.0  # nothing followed it
    assert seat_saturation["fire_rate"] == 1 / 8  # 1 of 4 accounts in Q1, none in Q2
    assert seat_saturation["hints"] == ["cover?", "FPR>=50%"]


def test_hints_name_each_part_of_the_bar_a_trigger_misses() -> None:
    def hinted(coverage: float | None, fpr: float | None, rate: float | None) -> list[str]:
        return hints({"coverage": coverage, "false_positive_rate": fpr, "fire_rate": rate})

    assert hinted(0.4, 0.49, 0.05) == []
    assert hinted(0.39, 0.5, 0.151) == ["cover<40%", "FPR>=50%", "fires>15%"]
    assert hinted(None, None, 0.04) == ["cover?", "FPR?", "fires<5%"]


def test_fire_rate_pools_only_quarters_the_data_mostly_covers() -> None:
    result = _replay([_signal("a", "company_growth", "2026-03-30")])
    result.activity = {"a": {day("2026-01-01"), day("2026-04-05")}, "b": {day("2026-03-30")}}
    figures = measure(result, [])
    assert [(q["quarter"], q["eligible_accounts"], q["pooled"]) for q in figures["quarters"]] == [
        ("2026Q1", 2, True),
        ("2026Q2", 1, False),
    ]
    company_growth = figures["runs"][0]["triggers"]["company_growth"]
    assert company_growth["fire_rate"] == 0.5
    assert company_growth["fire_rate_by_quarter"] == {"2026Q1": 0.5, "2026Q2": 0.0}


def test_outcomes_file_lines_that_do_not_parse_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path / "outcomes.jsonl",
        {"account_id": "a", "kind": "seat_purchase", "date": "2026-02-09"},
        b"[1, 2]",
        {"account_id": "b", "date": "not a date"},
        {"account_id": "c", "kind": "tier_upgrade", "date": "2026-02-10T23:30:00-02:00"},
        {"kind": "seat_purchase", "date": "2026-02-09"},
    )
    seen: list[Skipped] = []
    expansions = load_outcomes(path, seen.append)
    assert expansions == [
        Expansion("a", "seat_purchase", day("2026-02-09")),
        Expansion("c", "tier_upgrade", day("2026-02-11")),
    ]
    assert [s.line for s in seen] == [2, 3, 5]
    assert all(s.reason == "outcome" for s in seen)


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("simulated")
    events, outcomes = folder / "events.jsonl", folder / "outcomes.jsonl"
    argv = ["--accounts", "60", "--days", "120", "--seed", "5", "--start", "2026-01-05"]
    assert simulate.main([*argv, "--out", str(events), "--outcomes", str(outcomes)]) == 0
    return events, outcomes


def test_cli_prints_a_table_per_trigger_and_per_route(
    simulated: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    events, outcomes = simulated
    assert cli.main([str(events), "--outcomes", str(outcomes)]) == 0
    out, err = capsys.readouterr()
    assert "== per trigger (window 90 days)" in out
    assert "== per route" in out
    rows = {row.split()[0]: row.split() for row in out.splitlines() if row.strip()}
    for trigger in TRIGGERS:
        assert trigger in rows
    headings = [row.split() for row in out.splitlines() if row.startswith("trigger ")]
    assert headings[0][1:] == [
        "fired", "fire/q", "cover", "FPR", "open", "lead", "gated", "cool", "coll", "hint",
    ]  # fmt: skip
    assert headings[1][1:] == [
        "fired", "opp", "won", "lost", "rej", "->opp", "close", "FPR", "cycle", "won", "MRR",
    ]  # fmt: skip
    assert "== outcomes per trigger" in out
    assert int(rows["any"][1].replace(",", "")) > 0
    assert "backtest: 100%" in err and "events/s" in err


def test_cli_json_compares_rules_files_side_by_side(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, outcomes = simulated
    tuned = tuned_rules(tmp_path, [0.95, 1.0])
    argv = [str(events), "--outcomes", str(outcomes), "--json", "--rules", str(RULES_FILE)]
    assert cli.main([*argv, str(tuned)]) == 0
    results = orjson.loads(capsys.readouterr().out)
    assert [run["label"] for run in results["runs"]] == [str(RULES_FILE), str(tuned)]
    assert results["events"] == len(events.read_bytes().splitlines())
    assert results["outcomes"] == len(outcomes.read_bytes().splitlines())
    shipped, raised = (run["triggers"]["seat_saturation"] for run in results["runs"])
    assert shipped["fires"] > raised["fires"]
    assert shipped["fire_rate"] >= raised["fire_rate"]
    assert set(results["runs"][0]["triggers"]) == set(TRIGGERS)
    assert set(results["runs"][0]["routes"]) == {"in_app", "csm", "sales"}


def test_cli_writes_a_self_contained_html_report(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, outcomes = simulated
    report = tmp_path / "report.html"
    assert cli.main([str(events), "--outcomes", str(outcomes), "--html", str(report)]) == 0
    html = report.read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("<svg") == 2 * (len(TRIGGERS) + 1)  # fire rate and lead time, per trigger
    assert "Fire rate per week" in html and "Lead time" in html
    for outside in ("<script", "src=", "href=", "@import", "url("):
        assert outside not in html
    assert f"report written to {report}" in capsys.readouterr().err


def test_cli_names_a_bad_rules_file_or_a_missing_input(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, _ = simulated
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {gates: {min_health_score: 150}}\n")
    assert cli.main([str(events), "--rules", str(bad)]) == 2
    assert "defaults.gates.min_health_score" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_cli_reports_skipped_lines_on_stderr_and_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(
        tmp_path / "events.jsonl",
        line(account(0), "a1"),
        b'{"event_id": "x", "type": "user_active"',
        line(champion(1), "c1"),
    )
    assert cli.main([str(events), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {events}:2: not_json:" in captured.err
    results = orjson.loads(captured.out)
    assert (results["skipped_lines"], results["events"]) == (1, 2)
    assert results["skipped"][0]["line"] == 2
    assert results["runs"][0]["triggers"]["relationship_change"]["fires"] == 1

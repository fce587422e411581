"""Signals in words: every trigger's evidence renders, as the demo prints it."""

from __future__ import annotations

import orjson

from streams import present
from streams.domain.decide import Detector
from streams.domain.state import AccountState
from streams.events import decode
from streams.rules import TRIGGERS, load
from streams.settings import ROOT
from streams.simulate.world import simulate


def simulated_signals() -> list[dict]:
    detector = Detector(load(ROOT / "config" / "rules.yaml"))
    states: dict[str, AccountState] = {}
    signals = []
    for obj in simulate(accounts=120, days=75, seed=3):
        (event,) = decode(orjson.dumps(obj)).events
        state = states.setdefault(event.account_id, AccountState(event.account_id))
        signals += detector.apply(state, event).signals
    return signals


def test_every_trigger_in_a_simulated_base_renders_as_one_line_with_its_reason():
    signals = simulated_signals()
    assert set(s["trigger"] for s in signals) == set(TRIGGERS)
    for signal in signals:
        text = present.line(signal)
        assert "\n" not in text
        assert signal["account_id"] in text and f"-> {signal['route']}" in text
        assert present.why(signal) in text


def test_seat_saturation_reads_as_seats_in_use_against_the_limit():
    signal = {
        "trigger": "seat_saturation",
        "evidence": {"seats_in_use": 18, "seat_limit": 20, "ratio": 0.9, "sustained_days": 15.2},
    }
    assert present.why(signal) == "18 of 20 seats in use (90%) for 15 days"


def test_usage_projection_reads_as_days_to_the_limit():
    signal = {
        "trigger": "usage_ceiling",
        "evidence": {
            "meter": "api_calls",
            "ratio": 0.5,
            "basis": "projection",
            "projected_days_to_limit": 9.5,
        },
    }
    assert (
        present.why(signal)
        == "api_calls projected to reach its monthly limit in 9.5 days (50% used)"
    )


def test_the_summary_counts_signals_by_trigger_and_route():
    signals = [
        {"trigger": "invite_surge", "route": "in_app"},
        {"trigger": "invite_surge", "route": "csm"},
        {"trigger": "usage_ceiling", "route": "sales"},
    ]
    assert present.table(signals).splitlines() == [
        "trigger                 in_app     csm   sales   total",
        "invite_surge                 1       1       0       2",
        "usage_ceiling                0       0       1       1",
        "total                        1       1       1       3",
    ]

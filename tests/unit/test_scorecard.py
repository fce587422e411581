"""The readiness scorecard's rows from literal scenarios: criteria, readiness, motion, active
triggers and order; and its formats, query and token check."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import orjson
import pytest
from scenario import (
    SHIPPED_RULES,
    account,
    active,
    at,
    champion,
    events,
    feature,
    fold,
    funding,
    run,
    seat,
    signals,
    ticket,
)

from streams import scorecard
from streams.domain.scorecard import rank_key, ranked, scorecard_row
from streams.domain.state import AccountState, TriggerMemory
from streams.io.scorecard import order_score
from streams.signals import ScorecardRow

ALL_UNKNOWN = {
    "health": "unknown",
    "churn_risk": "unknown",
    "utilization": "unknown",
    "adoption": "unknown",
    "support": "unknown",
    "nps": "unknown",
}


def row_of(*objs: dict[str, Any], state: AccountState | None = None) -> dict[str, Any]:
    """The row after running the events through the detector, checked against the model."""
    evs = events(*objs)
    state = state or AccountState(evs[0].account_id)
    run(evs, state=state)
    row = scorecard_row(state, SHIPPED_RULES)
    ScorecardRow.model_validate(row)
    return row


def criterion(name: str, *objs: dict[str, Any]) -> str:
    return str(row_of(*objs)["criteria"][name])


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ([account(activated_at=at(-90))], "met"),
        ([account(activated_at=at(-10))], "unmet"),
        ([account(activated_at=None)], "unmet"),
    ],
)
def test_activation(scenario: list[dict[str, Any]], status: str) -> None:
    assert criterion("activation", *scenario) == status


@pytest.mark.parametrize(
    ("activated_at", "status"),
    [(at(-90), "activated"), (at(-10), "activating"), (None, "not_activated")],
)
def test_activation_status(activated_at: str | None, status: str) -> None:
    assert row_of(account(activated_at=activated_at))["activation_status"] == status


@pytest.mark.parametrize(
    ("health", "status"), [(90, "met"), (75, "met"), (74, "unmet"), (None, "unknown")]
)
def test_health(health: float | None, status: str) -> None:
    assert criterion("health", account(health_score=health)) == status


def users_active(day: float, users: list[str]) -> list[dict[str, Any]]:
    return [active(day, user) for user in users]


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        # 4 active in days 1-14 and again now, in the last 14 days
        ([*users_active(1, ["a", "b", "c", "d"]), *users_active(20, ["a", "b", "c"])], "met"),
        # 4 then 2: below 70 %
        ([*users_active(1, ["a", "b", "c", "d"]), *users_active(20, ["a", "b"])], "unmet"),
        # nobody active in the earlier window
        (users_active(20, ["a"]), "unknown"),
    ],
)
def test_churn_risk(scenario: list[dict[str, Any]], status: str) -> None:
    assert criterion("churn_risk", account(), *scenario) == status


@pytest.mark.parametrize(
    ("seated", "active_users", "status"), [(2, 2, "met"), (10, 5, "unmet"), (0, 3, "unknown")]
)
def test_utilization(seated: int, active_users: int, status: str) -> None:
    # seated 40 days ago (a seat_assigned is activity too), active since by the number given
    seats = [seat(-40, f"u{n}") for n in range(seated)]
    activity = users_active(2, [f"u{n}" for n in range(active_users)])
    assert criterion("utilization", *seats, account(), *activity) == status


@pytest.mark.parametrize(("used", "status"), [(3, "met"), (1, "unmet"), (0, "unknown")])
def test_adoption(used: int, status: str) -> None:
    features = [feature(1, "u1", f"f{n}") for n in range(used)]
    assert criterion("adoption", account(), *features) == status


@pytest.mark.parametrize(
    ("days", "status"),
    [
        ([10], "met"),  # one ticket 30-60 days before now, none since
        ([10, 45], "met"),  # one before, one now: not rising
        ([45], "unmet"),  # one now, none before
        ([], "unknown"),
    ],
)
def test_support(days: list[float], status: str) -> None:
    scenario = [account(), *(ticket(day) for day in days), active(50, "u1")]
    assert criterion("support", *scenario) == status


def test_support_stays_known_once_a_ticket_was_sent() -> None:
    # the ticket's day is long out of the windows: the account reports tickets, and none rise
    assert criterion("support", account(), ticket(1), active(200, "u1")) == "met"


@pytest.mark.parametrize(
    ("nps", "status"), [(9, "met"), (7, "met"), (3, "unmet"), (None, "unknown")]
)
def test_nps(nps: float | None, status: str) -> None:
    assert criterion("nps", account(nps=nps)) == status


def test_the_gates_use_the_segments_numbers() -> None:
    # activated 40 days ago: enough for smb (30), not for mid_market (45)
    assert criterion("activation", account(activated_at=at(-40))) == "met"
    mid = row_of(account(activated_at=at(-40), segment="mid_market"))
    assert (mid["criteria"]["activation"], mid["activation_status"]) == ("unmet", "activating")


def test_readiness_counts_the_gates_with_data() -> None:
    # activation and health met, the rest unknown
    ready = row_of(account())
    assert ready["criteria"] == {"activation": "met", **ALL_UNKNOWN, "health": "met"}
    assert ready["expansion_readiness"] == 100
    # activation, health met; nps unmet: 2 of 3
    assert row_of(account(nps=3))["expansion_readiness"] == 67
    # only activation has data, and fails
    not_activated = row_of(account(activated_at=None, health_score=None))
    assert not_activated["criteria"] == {"activation": "unmet", **ALL_UNKNOWN}
    assert not_activated["expansion_readiness"] == 0


@pytest.mark.parametrize(
    ("mrr", "motion", "acv"),
    [(1000, "self_serve", 1800.0), (5000, "csm_led", 9000.0), (20000, "sales_led", 36000.0)],
)
def test_the_motion_and_estimate_come_from_the_current_primary(
    mrr: float, motion: str, acv: float
) -> None:
    # company_growth: a seat expansion, 15 % of mrr a month
    row = row_of(account(mrr=mrr), funding(1))
    assert (row["recommended_motion"], row["estimated_expansion_acv"]) == (motion, acv)


def test_no_primary_means_no_motion_and_no_estimate() -> None:
    row = row_of(account(mrr=5000))
    assert (row["recommended_motion"], row["estimated_expansion_acv"]) == ("none", 0.0)


def test_a_failing_gate_means_not_ready_and_the_gated_trigger_is_active() -> None:
    row = row_of(account(nps=3), funding(1))
    assert row["recommended_motion"] == "not_ready"
    assert row["active_triggers"] == ["company_growth"]
    assert row["estimated_expansion_acv"] == 0.0  # nothing was published


def test_the_primary_stays_current_after_the_collision_window() -> None:
    row = row_of(account(mrr=5000), funding(1), active(40, "u1"))
    assert (row["recommended_motion"], row["estimated_expansion_acv"]) == ("csm_led", 9000.0)
    assert row["active_triggers"] == []  # decided on day 1: out of the 14 days


def test_active_triggers_are_those_of_the_last_14_whole_days_in_priority_order() -> None:
    decided = [account(), funding(1 + 23 / 24), champion(2)]
    late_on_day_14 = row_of(*decided, active(14 + 23.9 / 24, "u1"))
    # relationship_change outranks company_growth
    assert late_on_day_14["active_triggers"] == ["relationship_change", "company_growth"]
    # not 13 days and 2 hours after it, but day 1 is no longer among the last 14 dates
    early_on_day_15 = row_of(*decided, active(15 + 1 / 24, "u1"))
    assert early_on_day_15["active_triggers"] == ["relationship_change"]
    assert early_on_day_15["updated_at"] == "2024-05-16T01:00:00.000Z"


def test_stalled_pql_comes_first_and_a_colliding_trigger_is_active() -> None:
    row = row_of(account(), champion(1), active(31, "u1"), funding(31.5))
    assert row["active_triggers"] == ["stalled_pql", "company_growth"]
    assert row["recommended_motion"] == "csm_led"  # stalled_pql goes to a CSM


def test_a_trigger_in_cooldown_stays_active_while_it_fires() -> None:
    published = signals(run(events(account(), funding(1), funding(12))))
    assert len(published) == 1  # the second is in cooldown
    assert row_of(account(), funding(1), funding(12), active(25, "u1"))["active_triggers"] == [
        "company_growth"
    ]


def test_the_segment_is_the_default_until_one_is_sent() -> None:
    assert row_of(account())["segment"] == "smb"
    assert row_of(account(segment="enterprise"))["segment"] == "enterprise"


def test_the_day_a_trigger_was_decided_is_kept_in_the_stored_state() -> None:
    state = AccountState("acme")
    run(events(account(), funding(1)), state=state)
    restored = AccountState.from_bytes(state.to_bytes())
    assert restored.triggers["company_growth"].decided_day == state.today
    assert scorecard_row(restored, SHIPPED_RULES) == scorecard_row(state, SHIPPED_RULES)


def test_a_trigger_memory_stored_before_the_decided_day_reads_as_never_decided() -> None:
    assert TriggerMemory(*[1.0, 100.0, []]).decided_day is None
    assert TriggerMemory(*[1.0, 100.0, [], "2024-06-01"]).decided_day is None
    stored = TriggerMemory(1.0, 100.0, [], None, 19000).stored()
    assert stored == [1.0, 100.0, [], None, 19000]
    assert TriggerMemory(*stored).decided_day == 19000
    assert TriggerMemory(1.0, 100.0).stored() == [1.0, 100.0, []]


def row(account_id: str, readiness: int, acv: float) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "expansion_readiness": readiness,
        "estimated_expansion_acv": acv,
    }


# in the scorecard's order: readiness, then ACV, both descending, then account_id
ORDERED = [
    row("zeta", 100, 36000.0),
    row("alpha", 100, 1800.5),
    row("beta", 100, 1800.5),
    row("gamma", 100, 0.0),
    row("delta", 67, 90000.0),
    row("epsilon", 0, 0.0),
]


def test_the_scorecard_order() -> None:
    assert ranked(reversed(ORDERED)) == ORDERED


def test_the_order_in_redis_scores_ranks_as_the_scorecard_does() -> None:
    # a sorted set orders by score, then members in byte order
    in_redis = sorted(ORDERED, key=lambda r: (order_score(r), r["account_id"]))
    assert in_redis == sorted(ORDERED, key=rank_key)
    # a large ACV still ranks below any higher readiness
    assert order_score(row("a", 99, 10**12)) > order_score(row("b", 100, 0.0))


def test_a_row_as_folded_state_without_the_detector_has_no_triggers() -> None:
    state = fold(events(account(), seat(1, "u1"), active(1, "u1")))
    assert scorecard_row(state, SHIPPED_RULES)["active_triggers"] == []


# -- formats, query and token ---------------------------------------------------------

SAMPLE = [
    {
        "account_id": "=HYPERLINK(1)",
        "segment": "smb",
        "health_score": 90.0,
        "activation_status": "activated",
        "expansion_readiness": 100,
        "criteria": {"activation": "met", **ALL_UNKNOWN, "health": "met"},
        "active_triggers": ["seat_saturation", "invite_surge"],
        "recommended_motion": "csm_led",
        "estimated_expansion_acv": 9000.0,
        "updated_at": "2024-05-16T01:00:00.000Z",
    },
    {
        "account_id": "acme",
        "segment": "enterprise",
        "health_score": None,
        "activation_status": "activating",
        "expansion_readiness": 0,
        "criteria": {"activation": "unmet", **ALL_UNKNOWN},
        "active_triggers": [],
        "recommended_motion": "not_ready",
        "estimated_expansion_acv": 0.0,
        "updated_at": "2024-05-16T01:00:00.000Z",
    },
]


def test_the_csv_has_a_header_and_a_column_per_criterion() -> None:
    text = scorecard.to_csv(SAMPLE)
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert header == [
        "account_id",
        "segment",
        "health_score",
        "activation_status",
        "expansion_readiness",
        "criteria.activation",
        "criteria.health",
        "criteria.churn_risk",
        "criteria.utilization",
        "criteria.adoption",
        "criteria.support",
        "criteria.nps",
        "active_triggers",
        "recommended_motion",
        "estimated_expansion_acv",
        "updated_at",
    ]
    assert rows == [
        # an account id a spreadsheet would take for a formula stays text
        ["'=HYPERLINK(1)", "smb", "90.0", "activated", "100", "met", "met"]
        + ["unknown"] * 5
        + ["seat_saturation invite_surge", "csm_led", "9000.0", "2024-05-16T01:00:00.000Z"],
        ["acme", "enterprise", "", "activating", "0", "unmet"]
        + ["unknown"] * 6
        + ["", "not_ready", "0.0", "2024-05-16T01:00:00.000Z"],
    ]


def test_json_is_the_rows() -> None:
    assert orjson.loads(scorecard.render(SAMPLE, scorecard.Query(format="json"))) == SAMPLE


def test_the_page_is_self_contained_and_links_each_segment() -> None:
    page = scorecard.to_html(SAMPLE, scorecard.Query(top=5, segment="smb"))
    assert "<script" not in page and "src=" not in page and "@import" not in page
    assert "default-src &#x27;none&#x27;" in page or "default-src 'none'" in page
    for segment in ("smb", "mid_market", "enterprise"):
        assert f'href="?format=html&amp;top=5&amp;segment={segment}"' in page
    assert '<a href="?format=html&amp;top=5">all</a>' in page
    assert 'data-account-id="=HYPERLINK(1)"' in page


@pytest.mark.parametrize(
    ("params", "query"),
    [
        ({}, scorecard.Query()),
        ({"top": "3", "segment": "smb", "format": "csv"}, scorecard.Query(3, "smb", "csv")),
        ({"segment": ""}, scorecard.Query()),
    ],
)
def test_the_query(params: dict[str, str], query: scorecard.Query) -> None:
    assert scorecard.parse_query(params) == query


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"top": "0"}, "top"),
        ({"top": "x"}, "top"),
        ({"segment": "huge"}, "segment"),
        ({"format": "xml"}, "format"),
    ],
)
def test_a_bad_query_names_the_parameter(params: dict[str, str], named: str) -> None:
    with pytest.raises(scorecard.BadQuery, match=f"^{named} "):
        scorecard.parse_query(params)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),
        (basic("lead", "s3cret"), True),
        ("Bearer s3cre", False),
        ("Bearer s3cret2", False),
        ("Bearer ", False),
        (basic("s3cret", ""), False),
        ("Basic not-base64!", False),
        ("s3cret", False),
        (None, False),
    ],
)
def test_the_token(header: str | None, allowed: bool) -> None:
    assert scorecard.authorized(header, "s3cret") is allowed

"""The rules file: the shipped defaults, per-segment overrides, and errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from scenario import RULES_FILE

from streams.domain.triggers import ExpansionType
from streams.rules import ExpansionShare, RulesError, default_rules, load, parse

IN_APP = {"enabled": True, "min_route": "in_app"}
CONTRACT_DEFAULTS: dict[str, Any] = {
    "late_allowance_hours": 1,
    "dedup_window_hours": 24,
    "cooldown_days": 14,
    "collision_window_days": 7,
    "sla_hours": 48,
    "triggers": {
        "stalled_pql": {"enabled": True, "min_route": "csm", "after_days": 30},
        "usage_ceiling": {
            **IN_APP,
            "levels": [0.8, 1.0],
            "projection_days": 14,
            "projection_min_days": 7,
        },
        "seat_saturation": {**IN_APP, "levels": [0.8, 0.9, 1.0], "sustain_days": 14},
        "expansion_inquiry": {"enabled": True, "min_route": "csm", "kinds": ["expansion_inquiry"]},
        "gated_feature_demand": {
            **IN_APP,
            "distinct_features": 3,
            "distinct_window_days": 14,
            "hits": 10,
            "hits_window_days": 30,
            "hits_min_users": 2,
        },
        "value_discovery": {**IN_APP, "levels": [0.75, 1.0], "window_days": 90},
        "workflow_expansion": {
            **IN_APP,
            "blocks": 4,
            "block_days": 7,
            "min_mean_workflows": 3,
            "min_completion": 0.9,
        },
        "workflow_depth": {**IN_APP, "min_runs": 50, "window_days": 30},
        "invite_surge": {**IN_APP, "invites": 5, "window_days": 30},
        "new_department": {
            **IN_APP,
            "min_users": 2,
            "window_days": 14,
            "departments_known_days": 30,
        },
        "power_user_emergence": {
            **IN_APP,
            "multiple_of_mean": 2,
            "window_days": 30,
            "min_active_users": 3,
            "min_active_days": 10,
        },
        "renewal_window": {**IN_APP, "days_before": 60, "min_health_score": 80},
        "qbr_outcome": {"enabled": True, "min_route": "sales", "kinds": ["qbr_unmet_need"]},
        "relationship_change": {**IN_APP, "kinds": ["champion_promoted", "exec_sponsor_added"]},
        "company_growth": {**IN_APP, "kinds": ["funding_round", "headcount_growth"]},
    },
    "priority": [
        "usage_ceiling",
        "seat_saturation",
        "expansion_inquiry",
        "new_department",
        "gated_feature_demand",
        "value_discovery",
        "workflow_expansion",
        "workflow_depth",
        "invite_surge",
        "power_user_emergence",
        "renewal_window",
        "qbr_outcome",
        "relationship_change",
        "company_growth",
    ],
    "gates": {
        "activation_days": 30,
        "min_health_score": 75,
        "churn_window_days": 14,
        "churn_ratio": 0.7,
        "utilization_window_days": 30,
        "min_utilization": 0.6,
        "adoption_window_days": 30,
        "min_features_used": 3,
        "support_window_days": 30,
        "min_nps": 7,
    },
    "routing": {
        "expansion_share": {
            "seat": 0.15,
            "capacity": 0.30,
            "tier": 0.40,
            "cross_department": 0.75,
            "workflow": 0.20,
            "renewal": 0.20,
        },
        "sales_min_signal_stack": 4,
        "sales_min_estimate": 2000,
        "csm_min_estimate": 500,
    },
    "score": {"level": 50, "priority": 30, "stack": 10},
    "plans": {},
}
TRIGGERS = tuple(CONTRACT_DEFAULTS["priority"])
SEGMENT_GATES = {
    "smb": {
        "activation_days": 30,
        "min_health_score": 75,
        "min_utilization": 0.6,
        "min_features_used": 3,
        "min_nps": 7,
    },
    "mid_market": {
        "activation_days": 45,
        "min_health_score": 80,
        "min_utilization": 0.7,
        "min_features_used": 5,
        "min_nps": 8,
    },
    "enterprise": {
        "activation_days": 60,
        "min_health_score": 85,
        "min_utilization": 0.75,
        "min_features_used": 7,
        "min_nps": 8,
    },
}
# The shipped file's example plans: each plan's features, each tier adding to the one below.
STARTER = ["projects", "tasks", "comments", "file_sharing", "search"]
TEAM = [*STARTER, "workflow_automation", "api_access", "shared_dashboards"]
BUSINESS = [*TEAM, "sso", "advanced_analytics", "custom_roles", "audit_log"]
ENTERPRISE = [
    *BUSINESS,
    "scim_provisioning",
    "sandbox_environments",
    "data_residency",
    "premium_support",
]
SHIPPED_PLANS = {
    plan: {"features": features}
    for plan, features in (
        ("starter", STARTER),
        ("team", TEAM),
        ("business", BUSINESS),
        ("enterprise", ENTERPRISE),
    )
}


def error_of(data: Any) -> str:
    with pytest.raises(RulesError) as raised:
        parse(data)
    return str(raised.value)


# -- the shipped file ----------------------------------------------------------------


@pytest.mark.parametrize("segment", ["smb", "mid_market", "enterprise"])
def test_shipped_rules_are_the_contract_defaults_for_each_segment(segment: str) -> None:
    expected = {
        **CONTRACT_DEFAULTS,
        "gates": {**CONTRACT_DEFAULTS["gates"], **SEGMENT_GATES[segment]},
        "plans": SHIPPED_PLANS,
    }

    rules = load(RULES_FILE)

    assert rules.for_segment(segment).model_dump() == expected


def test_an_account_without_a_segment_gets_the_smb_rules() -> None:
    rules = load(RULES_FILE)

    assert rules.default_segment == "smb"
    assert rules.for_segment(None) == rules.for_segment("smb")


def test_an_empty_rules_file_gives_the_contract_defaults_for_every_segment() -> None:
    rules = default_rules()

    for segment in ("smb", "mid_market", "enterprise"):
        assert rules.for_segment(segment).model_dump() == CONTRACT_DEFAULTS


def test_rank_is_zero_for_the_highest_priority() -> None:
    rules = load(RULES_FILE).for_segment("smb")

    assert [rules.rank(trigger) for trigger in TRIGGERS] == list(range(len(TRIGGERS)))
    assert rules.rank("usage_ceiling") == 0
    assert rules.rank("company_growth") == 13


def test_the_digest_changes_with_the_content_and_only_with_it() -> None:
    one = parse({"defaults": {"cooldown_days": 14}})
    same = parse({"defaults": {"cooldown_days": 14}})
    other = parse({"defaults": {"cooldown_days": 10}})

    assert one.digest == same.digest
    assert one.digest != other.digest


# -- per-segment overrides ------------------------------------------------------------


def test_a_segment_override_replaces_only_what_it_names() -> None:
    rules = parse({"segments": {"mid_market": {"triggers": {"invite_surge": {"invites": 7}}}}})

    mid_market = rules.for_segment("mid_market").triggers.invite_surge
    assert mid_market.model_dump() == {
        "enabled": True,
        "min_route": "in_app",
        "invites": 7,
        "window_days": 30,
    }
    assert rules.for_segment("smb").triggers.invite_surge.invites == 5
    assert rules.for_segment("mid_market").gates == rules.for_segment("smb").gates


def test_a_segment_override_applies_on_top_of_the_file_defaults() -> None:
    rules = parse(
        {
            "defaults": {"gates": {"min_health_score": 60, "churn_ratio": 0.5}},
            "segments": {"enterprise": {"gates": {"min_health_score": 90}}},
        }
    )

    assert rules.for_segment("enterprise").gates.model_dump() == {
        **CONTRACT_DEFAULTS["gates"],
        "min_health_score": 90,
        "churn_ratio": 0.5,
    }
    assert rules.for_segment("smb").gates.min_health_score == 60


def test_a_list_in_an_override_replaces_the_whole_list() -> None:
    rules = parse({"segments": {"smb": {"triggers": {"seat_saturation": {"levels": [0.95]}}}}})

    assert rules.for_segment("smb").triggers.seat_saturation.levels == [0.95]
    assert rules.for_segment("enterprise").triggers.seat_saturation.levels == [0.8, 0.9, 1.0]


# -- errors name the field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (
            {"segments": {"smb": {"gates": {"min_health_score": 150}}}},
            "segments.smb.gates.min_health_score",
        ),
        (
            {"segments": {"enterprise": {"gates": {"activation_days": -1}}}},
            "segments.enterprise.gates.activation_days",
        ),
        ({"defaults": {"cooldown_days": "two weeks"}}, "defaults.cooldown_days"),
        ({"defaults": {"sla_hours": 0}}, "defaults.sla_hours"),
        ({"segments": {"enterprise": {"sla_hours": -4}}}, "segments.enterprise.sla_hours"),
        (
            {"defaults": {"triggers": {"invite_surge": {"invites": 0}}}},
            "defaults.triggers.invite_surge.invites",
        ),
        (
            {"defaults": {"triggers": {"invite_surge": {"enabled": "sometimes"}}}},
            "defaults.triggers.invite_surge.enabled",
        ),
        (
            {"defaults": {"routing": {"expansion_share": {"seat": -0.1}}}},
            "defaults.routing.expansion_share.seat",
        ),
        (
            {"defaults": {"triggers": {"company_growth": {"kinds": ["ipo"]}}}},
            "defaults.triggers.company_growth.kinds.0",
        ),
        ({"default_segment": "startup"}, "default_segment"),
        ({"version": 2}, "version"),
    ],
)
def test_a_bad_value_raises_rules_error_naming_its_path(data: dict[str, Any], path: str) -> None:
    assert error_of(data).startswith(f"rules: {path}: ")


def test_the_response_sla_is_set_per_segment() -> None:
    rules = parse({"defaults": {"sla_hours": 24}, "segments": {"enterprise": {"sla_hours": 8}}})
    assert [rules.for_segment(s).sla_hours for s in ("smb", "mid_market", "enterprise")] == [
        24,
        24,
        8,
    ]


@pytest.mark.parametrize(
    "path",
    [
        ("invite_surge", "window_days"),
        ("gated_feature_demand", "distinct_window_days"),
        ("gated_feature_demand", "hits_window_days"),
        ("new_department", "window_days"),
        ("power_user_emergence", "window_days"),
    ],
)
def test_a_window_longer_than_the_kept_activity_history_is_rejected(path: tuple[str, str]) -> None:
    trigger, field = path

    message = error_of({"defaults": {"triggers": {trigger: {field: 61}}}})

    assert message == (
        f"rules: defaults.triggers.{trigger}.{field}: Input should be less than or equal to 60"
    )


def test_a_window_of_60_days_is_accepted() -> None:
    rules = parse({"defaults": {"triggers": {"invite_surge": {"window_days": 60}}}})

    assert rules.for_segment("smb").triggers.invite_surge.window_days == 60


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"defaults": {"gates": {"min_health_scor": 50}}}, "defaults.gates.min_health_scor"),
        ({"segments": {"smb": {"trigers": {}}}}, "segments.smb.trigers"),
        ({"defaults": {"triggers": {"page_views": {}}}}, "defaults.triggers.page_views"),
        ({"cooldown_days": 14}, "cooldown_days"),
        ({"digest": "abc"}, "digest"),
    ],
)
def test_an_unknown_key_raises_rules_error_naming_it(data: dict[str, Any], path: str) -> None:
    assert error_of(data) == f"rules: {path}: Extra inputs are not permitted"


def test_an_unknown_segment_raises_rules_error_naming_it() -> None:
    message = error_of({"segments": {"startup": {}}})

    assert message.startswith("rules: segments.startup")


def test_a_segment_that_is_not_a_mapping_raises_rules_error_naming_it() -> None:
    assert error_of({"segments": {"smb": [1]}}).startswith("rules: segments.smb: ")


@pytest.mark.parametrize(
    ("priority", "path"),
    [
        ([*list(TRIGGERS)[:-1], "usage_ceiling"], "defaults.priority"),
        ([*list(TRIGGERS)[:-1], "page_views"], "defaults.priority.13"),
        ("usage_ceiling", "defaults.priority"),
    ],
    ids=["repeated", "unknown", "not a list"],
)
def test_a_bad_priority_list_raises_rules_error_naming_it(priority: Any, path: str) -> None:
    assert error_of({"defaults": {"priority": priority}}).startswith(f"rules: {path}: ")


def test_a_bad_priority_list_in_a_segment_names_the_segment() -> None:
    priority = ["invite_surge", "usage_ceiling", "invite_surge"]

    message = error_of({"segments": {"mid_market": {"priority": priority}}})

    assert message.startswith("rules: segments.mid_market.priority: ")
    assert "invite_surge" in message


# -- leaving out what does not change ----------------------------------------------------


def test_a_priority_listing_every_trigger_is_taken_as_written() -> None:
    written = list(reversed(TRIGGERS))

    rules = parse({"defaults": {"priority": written}})

    assert rules.for_segment("smb").priority == written


def test_a_partial_priority_refills_the_slots_of_the_triggers_it_lists_in_its_order() -> None:
    rules = parse({"defaults": {"priority": ["company_growth", "seat_saturation"]}})

    assert rules.for_segment("smb").priority == [
        "usage_ceiling",
        "company_growth",
        "expansion_inquiry",
        "new_department",
        "gated_feature_demand",
        "value_discovery",
        "workflow_expansion",
        "workflow_depth",
        "invite_surge",
        "power_user_emergence",
        "renewal_window",
        "qbr_outcome",
        "relationship_change",
        "seat_saturation",
    ]


def test_a_rules_file_written_for_contract_v1_loads_with_the_v2_defaults() -> None:
    v1 = load(Path(__file__).parent / "data" / "rules-v1.yaml")
    shipped = load(RULES_FILE)

    for segment in ("smb", "mid_market", "enterprise"):
        rules = v1.for_segment(segment)
        assert rules.priority == list(TRIGGERS)  # its eight in their v1 order, the new between
        assert rules.triggers == shipped.for_segment(segment).triggers
        assert rules.gates.model_dump() == {
            **CONTRACT_DEFAULTS["gates"],
            **SEGMENT_GATES[segment],
            # the v2 gates take the defaults, not the shipped per-segment numbers
            "min_utilization": 0.6,
            "min_features_used": 3,
            "min_nps": 7,
        }
        assert rules.plans == {}  # so value_discovery never fires


def test_a_segments_partial_priority_starts_from_the_files_defaults() -> None:
    defaults = ["company_growth", *TRIGGERS[:-1]]

    rules = parse(
        {
            "defaults": {"priority": defaults},
            "segments": {"enterprise": {"priority": ["relationship_change", "company_growth"]}},
        }
    )

    assert rules.for_segment("smb").priority == defaults
    assert rules.for_segment("enterprise").priority == [
        "relationship_change",
        *TRIGGERS[:-2],
        "company_growth",
    ]


def test_a_file_may_leave_out_triggers_and_numbers_it_does_not_change() -> None:
    rules = parse({"defaults": {"triggers": {"relationship_change": {"enabled": False}}}})

    smb = rules.for_segment("smb")
    assert smb.triggers.relationship_change.kinds == ["champion_promoted", "exec_sponsor_added"]
    assert "relationship_change" not in smb.enabled
    assert smb.triggers.invite_surge == default_rules().for_segment("smb").triggers.invite_surge


def test_every_expansion_type_has_a_share_in_the_routing_rules() -> None:
    assert set(ExpansionShare.model_fields) == set(get_args(ExpansionType))


@pytest.mark.parametrize("levels", [[1.0, 0.8], [0.8, 0.8], [], [0.8, 11]])
def test_bad_levels_raise_rules_error_naming_them(levels: list[float]) -> None:
    data = {"defaults": {"triggers": {"usage_ceiling": {"levels": levels}}}}

    assert error_of(data).startswith("rules: defaults.triggers.usage_ceiling.levels")


def test_a_top_level_that_is_not_a_mapping_raises_rules_error() -> None:
    assert error_of(["version", 1]) == "rules: the file must hold a mapping at the top level"


def test_loading_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("segments:\n  smb:\n    gates: {min_health_score: 150}\n")

    with pytest.raises(RulesError) as raised:
        load(path)

    assert str(raised.value).startswith(f"{path}: segments.smb.gates.min_health_score: ")


def test_loading_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\ndefaults:\n  cooldown_days: [14\n")

    with pytest.raises(RulesError) as raised:
        load(path)

    assert str(raised.value).startswith(f"{path}: not valid YAML at line ")


def test_loading_a_missing_file_raises_rules_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(RulesError) as raised:
        load(path)

    assert str(raised.value) == f"{path}: cannot read rules file (No such file or directory)"

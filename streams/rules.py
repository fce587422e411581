"""The rules file (config/rules.yaml) as validated models, with per-segment overrides merged."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

SEGMENTS = ("smb", "mid_market", "enterprise")
TRIGGERS = (
    "usage_ceiling",
    "seat_saturation",
    "new_department",
    "gated_feature_demand",
    "invite_surge",
    "power_user_emergence",
    "relationship_change",
    "company_growth",
)
EXPANSION_TYPE = {
    "usage_ceiling": "capacity",
    "seat_saturation": "seat",
    "gated_feature_demand": "tier",
    "invite_surge": "seat",
    "new_department": "cross_department",
    "power_user_emergence": "cross_department",
    "relationship_change": "seat",
    "company_growth": "seat",
}

Days = Annotated[int, Field(ge=1, le=365)]
# A window counted over the account state's day-bucketed activity, which keeps 64 days.
WindowDays = Annotated[int, Field(ge=1, le=60)]
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Ratio = Annotated[float, Field(gt=0, le=10)]
Money = Annotated[float, Field(ge=0)]
ExternalKind = Literal[
    "champion_promoted", "exec_sponsor_added", "funding_round", "headcount_growth"
]


class RulesError(ValueError):
    """The rules file does not validate; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ascending(levels: list[float]) -> list[float]:
    if not levels or sorted(set(levels)) != levels:
        raise ValueError("levels must be distinct and ascending")
    return levels


# Validated as fields, not models, so that an error's path ends in `.levels`.
AscendingLevels = Annotated[list[Ratio], AfterValidator(_ascending)]


class UsageCeiling(_Strict):
    enabled: bool = True
    levels: AscendingLevels = [0.8, 1.0]
    projection_days: Days = 14
    projection_min_days: Annotated[int, Field(ge=1, le=28)] = 7


class SeatSaturation(_Strict):
    enabled: bool = True
    levels: AscendingLevels = [0.8, 0.9, 1.0]
    sustain_days: Days = 14


class GatedFeatureDemand(_Strict):
    enabled: bool = True
    distinct_features: Count = 3
    distinct_window_days: WindowDays = 14
    hits: Count = 10
    hits_window_days: WindowDays = 30
    hits_min_users: Count = 2


class InviteSurge(_Strict):
    enabled: bool = True
    invites: Count = 5
    window_days: WindowDays = 30


class NewDepartment(_Strict):
    enabled: bool = True
    min_users: Count = 2
    window_days: WindowDays = 14
    departments_known_days: Days = 30


class PowerUserEmergence(_Strict):
    enabled: bool = True
    multiple_of_mean: Annotated[float, Field(gt=1, le=100)] = 2.0
    window_days: WindowDays = 30
    min_active_users: Count = 3
    min_active_days: Count = 10


class ExternalTrigger(_Strict):
    enabled: bool = True
    kinds: list[ExternalKind]


class Triggers(_Strict):
    usage_ceiling: UsageCeiling = UsageCeiling()
    seat_saturation: SeatSaturation = SeatSaturation()
    gated_feature_demand: GatedFeatureDemand = GatedFeatureDemand()
    invite_surge: InviteSurge = InviteSurge()
    new_department: NewDepartment = NewDepartment()
    power_user_emergence: PowerUserEmergence = PowerUserEmergence()
    relationship_change: ExternalTrigger = ExternalTrigger(
        kinds=["champion_promoted", "exec_sponsor_added"]
    )
    company_growth: ExternalTrigger = ExternalTrigger(kinds=["funding_round", "headcount_growth"])


class Gates(_Strict):
    activation_days: Annotated[int, Field(ge=0, le=3650)] = 30
    min_health_score: Annotated[float, Field(ge=0, le=100)] = 75
    churn_window_days: Annotated[int, Field(ge=1, le=30)] = 14
    churn_ratio: Annotated[float, Field(ge=0, le=1)] = 0.7


class ExpansionShare(_Strict):
    seat: Money = 0.15
    capacity: Money = 0.30
    tier: Money = 0.40
    cross_department: Money = 0.75


class Routing(_Strict):
    expansion_share: ExpansionShare = ExpansionShare()
    sales_min_signal_stack: Count = 4
    sales_min_estimate: Money = 2000
    csm_min_estimate: Money = 500


class Score(_Strict):
    level: Money = 50
    priority: Money = 30
    stack: Money = 10


class SegmentRules(_Strict):
    """The complete rules for one segment: defaults with that segment's overrides applied."""

    late_allowance_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 1
    dedup_window_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 24
    cooldown_days: Annotated[float, Field(ge=0, le=365)] = 14
    collision_window_days: Annotated[float, Field(ge=0, le=365)] = 7
    triggers: Triggers = Triggers()
    priority: list[Literal[TRIGGERS]] = list(TRIGGERS)  # type: ignore[valid-type]
    gates: Gates = Gates()
    routing: Routing = Routing()
    score: Score = Score()

    @field_validator("priority")
    @classmethod
    def _priority_names_each_trigger_once(cls, priority: list[str]) -> list[str]:
        if sorted(priority) != sorted(TRIGGERS):
            missing = sorted(set(TRIGGERS) - set(priority))
            raise ValueError(f"priority must list each trigger once (missing: {missing})")
        return priority

    def rank(self, trigger: str) -> int:
        """0 for the highest priority."""
        return self.ranks[trigger]

    @cached_property
    def ranks(self) -> dict[str, int]:
        return {trigger: rank for rank, trigger in enumerate(self.priority)}

    @cached_property
    def enabled(self) -> tuple[str, ...]:
        """The enabled triggers, highest priority first."""
        return tuple(t for t in self.priority if getattr(self.triggers, t).enabled)

    @cached_property
    def enabled_on_state(self) -> tuple[str, ...]:
        """The enabled triggers that read the account's state (all but the external ones,
        which fire on an external_signal event only), highest priority first."""
        return tuple(
            t for t in self.enabled if not isinstance(getattr(self.triggers, t), ExternalTrigger)
        )


class RulesFile(_Strict):
    """The rules file as written: defaults, and per-segment overrides of any of them."""

    version: Literal[1] = 1
    default_segment: Literal[SEGMENTS] = "smb"  # type: ignore[valid-type]
    defaults: dict[str, Any] = {}
    segments: dict[Literal[SEGMENTS], dict[str, Any]] = {}  # type: ignore[valid-type]


@dataclass(frozen=True)
class Rules:
    """Validated rules: the complete rules of each segment, and a digest of the file."""

    default_segment: str
    by_segment: dict[str, SegmentRules]
    digest: str

    def for_segment(self, segment: str | None) -> SegmentRules:
        return self.by_segment[segment or self.default_segment]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _first_error(error: ValidationError, prefix: str) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    return f"{where}: {first['msg']}"


def parse(data: Any, source: str = "rules") -> Rules:
    """Validate rules from parsed YAML; raise RulesError naming the bad field."""
    if not isinstance(data, dict):
        raise RulesError(f"{source}: the file must hold a mapping at the top level")
    try:
        shell = RulesFile.model_validate(data)
    except ValidationError as error:
        raise RulesError(f"{source}: {_first_error(error, '')}") from None
    defaults = shell.defaults or {}
    try:
        SegmentRules.model_validate(defaults)
    except ValidationError as error:
        raise RulesError(f"{source}: {_first_error(error, 'defaults')}") from None
    by_segment = {}
    for segment in SEGMENTS:
        override = shell.segments.get(segment, {})
        try:
            by_segment[segment] = SegmentRules.model_validate(_merge(defaults, override))
        except ValidationError as error:
            raise RulesError(f"{source}: {_first_error(error, f'segments.{segment}')}") from None
    digest = hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:12]
    return Rules(shell.default_segment, by_segment, digest)


def load(path: str | Path) -> Rules:
    """Read and validate a rules file; raise RulesError with one line naming the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RulesError(f"{path}: cannot read rules file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RulesError(f"{path}: not valid YAML{where}") from None
    return parse(data, str(path))


def default_rules() -> Rules:
    """The contract's defaults, as if read from an empty rules file."""
    return parse({}, "defaults")

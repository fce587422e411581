"""The rules file (config/rules.yaml) as validated models, with per-segment overrides merged.

The `triggers` and `priority` keys come from the trigger definitions (streams.domain.triggers)
and the `gates` numbers from the gate definitions (streams.domain.gates).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import Field, ValidationError, ValidationInfo, create_model, field_validator

from streams.domain.gates import GATES, Gate
from streams.domain.rule_fields import Count, Money, Strict
from streams.domain.triggers import CATALOG, Catalog, Check, PlanFeatures, TriggerRule
from streams.events import Segment

SEGMENTS: tuple[str, ...] = get_args(Segment)
# The contract's triggers: unranked ones first, then highest default priority first.
TRIGGERS = CATALOG.names
# A trigger's check, its rule, and what it is published once per (or None).
# (trigger, check, its rule, once_per, reads_mask)
CheckWithRule = tuple[str, Check, TriggerRule, Any, int | None]


class RulesError(ValueError):
    """The rules file does not validate; the message names the file and the field."""


class _Parts(Strict):
    """A part whose fields are made from definitions: one per trigger, or each gate's numbers."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


def _gates_model(gates: tuple[Gate[Any], ...]) -> type[_Parts]:
    """One flat `gates` mapping holding every gate's numbers, as the rules file has it."""
    fields: dict[str, Any] = {}
    for gate in gates:
        for name, info in gate.rule.model_fields.items():
            if name in fields:
                raise ValueError(f"two gates have the number {name}")
            fields[name] = (info.annotation, info)
    return create_model("Gates", __base__=_Parts, **fields)


Gates = _gates_model(GATES)


class ExpansionShare(Strict):
    seat: Money = 0.15
    capacity: Money = 0.30
    tier: Money = 0.40
    cross_department: Money = 0.75
    workflow: Money = 0.20
    renewal: Money = 0.20


class Routing(Strict):
    expansion_share: ExpansionShare = ExpansionShare()
    sales_min_signal_stack: Count = 4
    sales_min_estimate: Money = 2000
    csm_min_estimate: Money = 500


class Score(Strict):
    level: Money = 50
    priority: Money = 30
    stack: Money = 10


def refill(order: tuple[str, ...], listed: list[str]) -> list[str]:
    """`order` with the slots of the triggers in `listed` refilled with them in listed order.

    A rules file's `priority` may list only the triggers it moves: the others keep their
    place in the order it starts from (the defaults', or the contract's). Listing every
    trigger gives exactly the listed order.
    """
    chosen = set(listed)
    moved = iter(listed)
    return [next(moved) if trigger in chosen else trigger for trigger in order]


class SegmentRules(Strict):
    """The complete rules for one segment: defaults with that segment's overrides applied.

    Validate with `segment_rules_model(catalog)`: it gives `triggers` one field per trigger
    definition and `priority` their names, and `gates` every gate's numbers.
    """

    catalog: ClassVar[Catalog] = CATALOG
    late_allowance_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 1
    dedup_window_hours: Annotated[float, Field(ge=0, le=24 * 30)] = 24
    cooldown_days: Annotated[float, Field(ge=0, le=365)] = 14
    collision_window_days: Annotated[float, Field(ge=0, le=365)] = 7
    # wall-clock hours a csm or sales signal may go unanswered before it breaches the SLA
    sla_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 48
    triggers: _Parts = _Parts()
    priority: list[str] = []
    gates: _Parts = _Parts()
    # plan -> the features it includes (value_discovery)
    plans: dict[Annotated[str, Field(min_length=1, max_length=256)], PlanFeatures] = {}
    routing: Routing = Routing()
    score: Score = Score()

    @field_validator("priority")
    @classmethod
    def _priority_refills_the_order_it_starts_from(
        cls, listed: list[str], info: ValidationInfo
    ) -> list[str]:
        repeated = sorted({trigger for trigger in listed if listed.count(trigger) > 1})
        if repeated:
            raise ValueError(f"priority must name each trigger once (repeated: {repeated})")
        start = (info.context or {}).get("priority", cls.catalog.ranked)
        return refill(start, listed)

    def rank(self, trigger: str) -> int:
        """0 for the highest priority (ranked triggers only)."""
        return self.ranks[trigger]

    def min_route(self, trigger: str) -> str:
        return str(getattr(self.triggers, trigger).min_route)

    def expansion_type(self, trigger: str) -> str:
        return self.catalog[trigger].expansion_type

    @cached_property
    def ranks(self) -> dict[str, int]:
        return {trigger: rank for rank, trigger in enumerate(self.priority)}

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Every trigger: unranked ones first, then highest priority first."""
        return (*(t.name for t in self.catalog if not t.ranked), *self.priority)

    @cached_property
    def enabled(self) -> tuple[str, ...]:
        """The enabled triggers, in `order`."""
        return tuple(t for t in self.order if getattr(self.triggers, t).enabled)

    @cached_property
    def checks(self) -> tuple[CheckWithRule, ...]:
        """The enabled triggers' checks with their rules, in the order of `enabled`."""
        return tuple(
            (
                name,
                self.catalog[name].check,
                self._rule(name),
                self.catalog[name].once_per,
                self.catalog[name].reads_mask,
            )
            for name in self.enabled
        )

    def _rule(self, trigger: str) -> TriggerRule:
        """The trigger's rule, given the plans when it reads them."""
        rule: TriggerRule = getattr(self.triggers, trigger)
        if "plans" in type(rule).model_fields:
            rule = rule.model_copy(update={"plans": self.plans})
        return rule

    @cached_property
    def state_checks(self) -> tuple[CheckWithRule, ...]:
        """The checks of the enabled triggers that read the account's state (all but the
        external ones, which fire on an external_signal event only)."""
        return tuple(check for check in self.checks if not self.catalog[check[0]].external)

    @cached_property
    def gate_checks(self) -> tuple[tuple[Gate[Any], Strict], ...]:
        """Each gate with its numbers for this segment, in the order they are checked."""
        # constructed, not validated again: the numbers keep the exact values read
        return tuple(
            (
                gate,
                gate.rule.model_construct(
                    **{n: getattr(self.gates, n) for n in gate.rule.model_fields}
                ),
            )
            for gate in GATES
        )


@cache
def segment_rules_model(catalog: Catalog) -> type[SegmentRules]:
    """The SegmentRules model for these trigger definitions."""
    fields: dict[str, Any] = {t.name: (t.rule, t.rule()) for t in catalog}
    triggers = create_model("Triggers", __base__=_Parts, **fields)
    ranked = catalog.ranked  # (a name, for mypy to accept the Literal below)
    model = create_model(
        "SegmentRules",
        __base__=SegmentRules,
        triggers=(triggers, triggers()),
        priority=(list[Literal[ranked]], list(ranked)),  # type: ignore[valid-type]
        gates=(Gates, Gates()),
    )
    model.catalog = catalog
    return model


class RulesFile(Strict):
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


def parse(data: Any, source: str = "rules", catalog: Catalog = CATALOG) -> Rules:
    """Validate rules from parsed YAML; raise RulesError naming the bad field.

    `catalog` is the set of triggers the file may configure: the contract's, or in a test
    those and a toy one.
    """
    if not isinstance(data, dict):
        raise RulesError(f"{source}: the file must hold a mapping at the top level")
    try:
        shell = RulesFile.model_validate(data)
    except ValidationError as error:
        raise RulesError(f"{source}: {_first_error(error, '')}") from None
    model = segment_rules_model(catalog)
    defaults = shell.defaults or {}
    try:
        base = model.model_validate(defaults)
    except ValidationError as error:
        raise RulesError(f"{source}: {_first_error(error, 'defaults')}") from None
    # a segment's priority refills the order of the defaults
    context = {"priority": tuple(base.priority)}
    by_segment = {}
    for segment in SEGMENTS:
        override = shell.segments.get(segment, {})
        try:
            by_segment[segment] = model.model_validate(_merge(defaults, override), context=context)
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

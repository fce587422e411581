"""Building blocks of rule models: a strict frozen base, and the bounded numbers of the rules."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A part of the rules file: unknown keys are errors, and validated rules never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def ascending(levels: list[float]) -> list[float]:
    if not levels or sorted(set(levels)) != levels:
        raise ValueError("levels must be distinct and ascending")
    return levels


Days = Annotated[int, Field(ge=1, le=365)]
# A window counted over the account state's day-bucketed activity, which keeps 64 days.
WindowDays = Annotated[int, Field(ge=1, le=60)]
Count = Annotated[int, Field(ge=1, le=1_000_000)]
Ratio = Annotated[float, Field(gt=0, le=10)]
Money = Annotated[float, Field(ge=0)]
# Validated as fields, not models, so that an error's path ends in `.levels`.
AscendingLevels = Annotated[list[Ratio], AfterValidator(ascending)]

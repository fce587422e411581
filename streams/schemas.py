"""JSON Schemas of the contract's messages, generated from the pydantic models into schemas/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from streams.events import MAX_BATCH_EVENTS, Event
from streams.settings import ROOT
from streams.signals import Decision, DlqRecord, ExpansionSignal, Outcome, ScorecardRow

DIRECTORY = ROOT / "schemas"

EventUnion = Annotated[Event, Field(discriminator="type")]


class EventBatch(BaseModel):
    """A batch envelope: one account's events, in order, in one message (contract section 1)."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventUnion] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)  # type: ignore[valid-type]


# file name -> (title, the type whose JSON Schema it holds)
SCHEMAS: dict[str, tuple[str, Any]] = {
    "event": ("One product event (topic product-events)", EventUnion),
    "event-batch": ("A batch envelope of events (topic product-events)", EventBatch),
    "signal": ("An expansion signal (topic expansion-signals)", ExpansionSignal),
    "decision": ("A trigger not published, and why (topic expansion-decisions)", Decision),
    "dlq-record": ("A rejected input and why (topic product-events-dlq)", DlqRecord),
    "outcome": ("What became of a signal (topic expansion-outcomes)", Outcome),
    "scorecard-row": ("One account's expansion readiness (the scorecard)", ScorecardRow),
}


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one file in SCHEMAS."""
    title, model = SCHEMAS[name]
    body = TypeAdapter(model).json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:expansion-signals:schema:{name}",
        **body,
        "title": title,
    }


def render(name: str) -> bytes:
    return orjson.dumps(schema(name), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def path(name: str, directory: Path = DIRECTORY) -> Path:
    return directory / f"{name}.schema.json"


def stale(directory: Path = DIRECTORY) -> list[str]:
    """Names of the schema files that are missing or differ from the models."""
    return [
        name
        for name in SCHEMAS
        if not path(name, directory).is_file() or path(name, directory).read_bytes() != render(name)
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams schemas",
        description="Write the JSON Schemas of events, signals and records into schemas/.",
    )
    parser.add_argument("--out", type=Path, default=DIRECTORY, help="directory (default schemas/)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(args.out)
        for name in out_of_date:
            print(f"out of date: {path(name, args.out)}", file=sys.stderr)
        return 1 if out_of_date else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in SCHEMAS:
        path(name, args.out).write_bytes(render(name))
        print(path(name, args.out))
    return 0

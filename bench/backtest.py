"""Events per second through `python -m streams backtest` on one core, when the backtest exists."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.infra import BenchError, log_tail, say
from streams.settings import ROOT


def available() -> bool:
    return importlib.util.find_spec("streams.backtest") is not None


def prepare(workdir: Path, accounts: int, days: int, seed: int) -> tuple[Path, Path, int]:
    """Write a simulated events file and its outcomes; return both paths and the line count."""
    events_path, outcomes_path = workdir / "backtest-events.jsonl", workdir / "outcomes.jsonl"
    log_path = workdir / "simulate.log"
    argv = [
        sys.executable, "-m", "streams", "simulate",
        "--accounts", str(accounts), "--days", str(days), "--seed", str(seed),
        "--start", "2026-01-01", "--out", str(events_path), "--outcomes", str(outcomes_path),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        done = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise BenchError(f"simulate failed ({done.returncode}):\n{log_tail(log_path)}")
    with events_path.open("rb") as lines:
        count = sum(1 for _ in lines)
    say(f"  backtest input: {count:,} events ({accounts:,} accounts over {days} days)")
    return events_path, outcomes_path, count


def run_once(events_path: Path, outcomes_path: Path, events: int, workdir: Path) -> float:
    """Time one backtest process pinned to one core (start-up included); events per second."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    argv = [
        *pin, sys.executable, "-m", "streams", "backtest", str(events_path),
        "--outcomes", str(outcomes_path), "--json",
    ]  # fmt: skip
    out_path, log_path = workdir / "backtest.json", workdir / "backtest.log"
    with out_path.open("wb") as out, log_path.open("wb") as log:
        started = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=log)
        seconds = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"backtest failed ({done.returncode}):\n{log_tail(log_path)}")
    return events / seconds

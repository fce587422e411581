"""`python -m streams backtest`: replay, measure, and print or write the results."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from streams.backtest.html import render
from streams.backtest.measure import WINDOW_DAYS, measure
from streams.backtest.replay import Skipped, load_outcomes, replay
from streams.backtest.text import render_text
from streams.progress import Progress
from streams.rules import RulesError, load

SHOWN_SKIPS = 100  # skipped lines printed on stderr; the rest are counted


def main(argv: list[str]) -> int:
    """`python -m streams backtest EVENTS --outcomes OUTCOMES [--rules FILE ...]`."""
    parser = argparse.ArgumentParser(
        prog="python -m streams backtest",
        description="Replay a JSONL file of events through the detector's decisions and "
        "report, per trigger and per route, fires, fire rate, coverage of expansions, false "
        "positives, lead time and decisions; several rules files side by side.",
    )
    parser.add_argument("events", help="events file: JSON lines, each an event or a batch")
    parser.add_argument("--outcomes", help="expansions file: JSON lines {account_id, kind, date}")
    parser.add_argument(
        "--rules",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="rules file(s) to compare (default: RULES_FILE, config/rules.yaml)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=WINDOW_DAYS,
        metavar="DAYS",
        help=f"days between a signal and the expansion it announces (default {WINDOW_DAYS})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be at least 1 day")
    if not args.rules:
        from streams.settings import Settings

        default = Settings().rules_file
        shown_as = os.path.relpath(default) if default.is_relative_to(Path.cwd()) else default
        args.rules = [str(shown_as)]
    rulesets = []
    for path in args.rules:
        try:
            rulesets.append((path, load(path)))
        except RulesError as error:
            print(f"error: bad rules file: {error}", file=sys.stderr)
            return 2

    bar = Progress("backtest", 1)
    shown = 0

    def report_skip(path: str) -> Callable[[Skipped], None]:
        def report(skipped: Skipped) -> None:
            nonlocal shown
            shown += 1
            if shown <= SHOWN_SKIPS:
                bar.message(f"skipped {skipped.describe(path)}")
            elif shown == SHOWN_SKIPS + 1:
                bar.message("skipped: further skipped lines are counted, not shown")

        return report

    started = time.monotonic()

    def progress(read: int, size: int, events: int) -> None:
        bar.total = size
        rate = events / max(time.monotonic() - started, 1e-9)
        bar.update(read, f"{events:,} events, {rate:,.0f} events/s")

    try:
        expansions = None
        if args.outcomes:
            expansions = load_outcomes(args.outcomes, report_skip(args.outcomes))
        result = replay(args.events, rulesets, report_skip(args.events), progress)
    except OSError as error:
        bar.close()
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        return 130
    bar.close()
    elapsed = time.monotonic() - started
    results = measure(result, expansions, args.window)
    results["seconds"] = round(elapsed, 3)
    print(
        f"backtest: {result.events:,} events in {elapsed:.1f} s "
        f"({result.events / max(elapsed, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    if args.html:
        Path(args.html).write_text(render(results), encoding="utf-8")
        print(f"backtest: report written to {args.html}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render_text(results))
    return 0

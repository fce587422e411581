"""`python -m bench [--runs N] [--events N] [--quick]`: every figure of the benchmark, in one run.

One embedded broker and one Redis for the whole run; one worker process at a time; inputs
produced once. Progress goes to stderr, the table to stdout, everything to bench/results.json.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import uuid4

from bench import anchors, backtest, big_account, detector
from bench.infra import BenchError, check_redis, cpu_speed, delete_prefix, say, stop_all
from bench.inputs import Inputs, produce_inputs
from bench.report import RESULTS, Figure, machine, ratio, table, write_results
from streams.apache_kafka import KafkaBroker
from streams.embedded import BrokerProcess, BrokerStartError, EmbeddedBroker
from streams.settings import ROOT, Settings

# Other processes' CPU (in cores) above which a measurement is reported as disturbed.
BUSY_MACHINE = 0.15
# The run is flagged when the machine's slowest speed is below this share of its fastest.
# The probe itself varies by up to about 20 % on a quiet machine; the slowdown of a shared
# host seen here was 30-40 %.
SPEED_SPREAD = 0.75
BROKERS: dict[str, type[BrokerProcess]] = {"tansu": EmbeddedBroker, "kafka": KafkaBroker}
PHASES = (
    "raw",
    "noop",
    "decode",
    "single",
    "batch",
    "latency",
    "state",
    "backtest",
    "bigaccount",
)
# The simulation: 2,000 accounts over 30 days are about 310,000 events, and every behaviour
# the simulator has starts within the 30 days, so the later days fire signals.
FULL = {
    "runs": 3,
    "accounts": 2000,
    "days": 30,
    "events": 100_000,
    "latency_seconds": 30.0,
    "state_accounts": 100_000,
}
QUICK = {
    "runs": 1,
    "accounts": 500,
    "days": 30,
    "events": 20_000,
    "latency_seconds": 10.0,
    "state_accounts": 20_000,
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the detector's throughput, latency and memory on a broker of "
        "its own; print a table and write bench/results.json.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a minute or two")
    parser.add_argument(
        "--broker",
        choices=sorted(BROKERS),
        default="tansu",
        help="the broker the run starts: the embedded Tansu, or Apache Kafka (tansu)",
    )
    parser.add_argument("--runs", type=int, help="runs per throughput figure (3; quick 1)")
    parser.add_argument("--accounts", type=int, help="simulated accounts (2,000; quick 500)")
    parser.add_argument("--days", type=int, help="simulated days (30)")
    parser.add_argument(
        "--events",
        type=int,
        help="events in the single-event topic: the simulation's first ones (100,000; "
        "quick 20,000)",
    )
    parser.add_argument(
        "--batch-copies",
        type=int,
        default=1,
        help="copies of the whole simulation in the batch topic, under other account ids (1)",
    )
    parser.add_argument(
        "--latency-seconds", type=float, help="length of the paced phase (30; quick 10)"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="offered events per second (default: half of detector_single_eps)",
    )
    parser.add_argument(
        "--latency-linger-ms",
        type=float,
        default=5.0,
        help="linger of the paced phase's producer, part of the latency measured (5: "
        "librdkafka's default)",
    )
    parser.add_argument(
        "--state-accounts",
        type=int,
        help="new accounts for the memory figure (100,000; quick 20,000)",
    )
    parser.add_argument("--partitions", type=int, default=Settings().topic_partitions)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all)",
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.events < 100 or args.batch_copies < 1:
        parser.error("--runs and --batch-copies must be at least 1, --events at least 100")
    if args.latency_linger_ms < 0:
        parser.error("--latency-linger-ms must be at least 0")
    return args


def cpu_line(cpu: dict[str, float]) -> str:
    return "CPU " + ", ".join(f"{name} {share:.0%}" for name, share in cpu.items())


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Bench:
    """The figures of one run, and the phases that fill them in."""

    def __init__(self, args: argparse.Namespace, run_id: str, workdir: Path) -> None:
        self.args = args
        self.run_id = run_id
        self.workdir = workdir
        self.details: dict[str, Any] = {}
        self.disturbed: list[str] = []
        self.speeds: list[tuple[str, float]] = []  # (when, cpu_speed())
        self.figures = {
            "raw_consume_eps": Figure("raw_consume_eps", "events/s"),
            "faust_noop_eps": Figure("faust_noop_eps", "events/s"),
            "faust_decode_eps": Figure("faust_decode_eps", "events/s"),
            "detector_single_eps": Figure("detector_single_eps", "events/s"),
            "detector_batch_eps": Figure("detector_batch_eps", "events/s"),
            "latency_p50_ms": Figure("latency_p50_ms", "ms"),
            "latency_p99_ms": Figure("latency_p99_ms", "ms", ("<=", 200)),
            "state_bytes_per_account": Figure("state_bytes_per_account", "bytes", ("<=", 2048)),
            "backtest_eps": Figure("backtest_eps", "events/s"),
            **{
                name: Figure(name, unit)
                for users in big_account.SIZES
                for name, unit in (
                    (f"big_account_{users // 1000}k_eps", "events/s"),
                    (f"big_account_{users // 1000}k_state_bytes", "bytes"),
                )
            },
            "big_account_busy_changelog_bytes_per_s": Figure(
                "big_account_busy_changelog_bytes_per_s", "bytes/s"
            ),
        }
        for phase, names in {
            "raw": ["raw_consume_eps"],
            "noop": ["faust_noop_eps"],
            "decode": ["faust_decode_eps"],
            "single": ["detector_single_eps"],
            "batch": ["detector_batch_eps"],
            "latency": ["latency_p50_ms", "latency_p99_ms"],
            "state": ["state_bytes_per_account"],
            "backtest": ["backtest_eps"],
            "bigaccount": [name for name in self.figures if name.startswith("big_account_")],
        }.items():
            if phase not in args.phases:
                for name in names:
                    self.figures[name].missing = "not run (--phases)"

    def attempt(self, names: list[str], what: str, measure: Callable[[], Any]) -> Any:
        """Run one measurement; on failure mark its figures and go on with the others."""
        try:
            return measure()
        except Exception as error:  # noqa: BLE001 - one failed measurement must not end the run
            if not isinstance(error, BenchError):
                error = BenchError(f"{type(error).__name__}: {error}")
            say(f"FAILED {what}: {error}")
            for name in names:
                self.figures[name].missing = f"failed ({what}; see log)"
            self.details.setdefault("failures", []).append(f"{what}: {error}")
            return None

    def run(self, ctx: detector.Context) -> None:
        args, phases = self.args, self.args.phases
        inputs = produce_inputs(
            ctx.bootstrap,
            self.run_id,
            args.partitions,
            args.accounts,
            args.days,
            args.events,
            args.batch_copies,
            args.seed,
        )
        # The whole simulation stays in this process for the run, beside what is measured
        # here: the plain consumer, and the latency phase's producer and signal reader. Full
        # garbage collections over it took 0.34-0.36 s of the plain consumer's 0.55 s runs;
        # frozen, it is left alone, as in a process that holds only what it measures.
        gc.collect()
        gc.freeze()
        self.details["inputs"] = {
            "single_events": inputs.single_events,
            "batch_events": inputs.batch_events,
            "batch_messages": inputs.batch_messages,
            "accounts": inputs.accounts,
            "event_types": inputs.event_types,
            "simulated_days": list(inputs.days_covered),
            "partitions": args.partitions,
        }
        throughput = any(phase in phases for phase in ("raw", "noop", "decode", "single", "batch"))
        for run in range(1, args.runs + 1):
            if throughput:
                self.note_speed(f"before throughput run {run}")
            self.throughput_run(ctx, inputs, run)
        if "latency" in phases:
            self.note_speed("before latency")
            self.latency(ctx, inputs)
        if "state" in phases:
            self.note_speed("before state")
            self.state(ctx)
        if "backtest" in phases:
            self.note_speed("before backtest")
            self.backtest()
        if "bigaccount" in phases:
            self.note_speed("before bigaccount")
            self.big_account()
        self.note_speed("at the end")

    def note_speed(self, when: str) -> None:
        speed = cpu_speed()
        self.speeds.append((when, round(speed, 1)))
        say(f"machine speed {when}: {speed:.1f} million loop turns/s")

    def speed_warning(self) -> str | None:
        """A line for the report when the machine's speed changed during the run."""
        values = [speed for _, speed in self.speeds]
        if len(values) < 2 or min(values) >= SPEED_SPREAD * max(values):
            return None
        return (
            f"the machine's speed changed during the run: {min(values):.1f} to "
            f"{max(values):.1f} million loop turns/s (see machine_speed in "
            f"{RESULTS.relative_to(ROOT)}); figures measured while it was slow are lower"
        )

    def throughput_run(self, ctx: detector.Context, inputs: Inputs, run: int) -> None:
        args, phases = self.args, self.args.phases
        of = f"run {run}/{args.runs}"
        single, batch = inputs.single_events, inputs.batch_events
        measurements: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = [
            (
                "raw",
                "raw_consume_eps",
                f"aiokafka consumer + orjson over {single:,} events",
                partial(
                    anchors.raw_consume,
                    ctx.bootstrap,
                    ctx.broker_pid,
                    inputs.single_topic,
                    args.partitions,
                    single,
                ),
            ),
            (
                "noop",
                "faust_noop_eps",
                f"no-op Faust agent over {single:,} events",
                partial(
                    anchors.faust_noop,
                    ctx.bootstrap,
                    ctx.broker_pid,
                    inputs.single_topic,
                    args.partitions,
                    single,
                    f"{self.run_id}-noop-{run}",
                    ctx.workdir,
                    tansu=ctx.tansu,
                ),
            ),
            (
                "decode",
                "faust_decode_eps",
                f"Faust agent decoding {batch:,} events in {inputs.batch_messages:,} envelopes",
                partial(
                    anchors.faust_noop,
                    ctx.bootstrap,
                    ctx.broker_pid,
                    inputs.batch_topic,
                    args.partitions,
                    batch,
                    f"{self.run_id}-decode-{run}",
                    ctx.workdir,
                    tansu=ctx.tansu,
                    decoding=True,
                ),
            ),
            (
                "single",
                "detector_single_eps",
                f"the worker over {single:,} single-event messages",
                partial(
                    detector.throughput,
                    ctx,
                    f"{self.run_id}-single-{run}",
                    inputs.single_topic,
                    single,
                    0.2,
                ),
            ),
            (
                "batch",
                "detector_batch_eps",
                f"the worker over {batch:,} events in {inputs.batch_messages:,} envelopes",
                partial(
                    detector.throughput,
                    ctx,
                    f"{self.run_id}-batch-{run}",
                    inputs.batch_topic,
                    batch,
                    0.5,
                ),
            ),
        ]
        for phase, figure, what, measure in measurements:
            if phase not in phases:
                continue
            say(f"{figure} {of}: {what}")
            result = self.attempt([figure], f"{figure} {of}", measure)
            if result is None:
                continue
            self.figures[figure].runs.append(result["eps"])
            self.details.setdefault(figure, []).append(result)
            extra = f"ready in {result['ready_s']}s; " if "ready_s" in result else ""
            say(f"  {figure} {result['eps']:,.0f} ({extra}{cpu_line(result['cpu'])})")
            self.check_quiet(f"{figure} {of}", result["cpu"])

    def check_quiet(self, what: str, cpu: dict[str, float]) -> None:
        """Note a measurement during which other processes took a noticeable share of CPU."""
        if cpu.get("others", 0.0) >= BUSY_MACHINE:
            say(f"  WARNING: other processes used {cpu['others']:.0%} of a core meanwhile")
            self.disturbed.append(f"{what} (others {cpu['others']:.0%} of a core)")

    def latency(self, ctx: detector.Context, inputs: Inputs) -> None:
        single = self.figures["detector_single_eps"].median
        rate = self.args.latency_rate or (single / 2 if single else None)
        names = ["latency_p50_ms", "latency_p99_ms"]
        if not rate:
            for name in names:
                self.figures[name].missing = "n/a (needs detector_single_eps or --latency-rate)"
            return
        runs: list[dict[str, Any]] = []
        self.details["latency"] = runs
        for run in range(1, self.args.runs + 1):
            of = f"run {run}/{self.args.runs}"
            name = f"{self.run_id}-latency-{run}"
            say(
                f"latency {of}: worker {name}, signals matched to send times, at {rate:,.0f}/s"
                f" (producer linger {self.args.latency_linger_ms:g} ms)"
            )
            with self.latency_broker(ctx) as own:
                result = self.attempt(
                    names,
                    f"latency {of}",
                    partial(
                        detector.latency,
                        own,
                        name,
                        inputs,
                        rate,
                        self.args.latency_seconds,
                        self.args.latency_linger_ms,
                    ),
                )
            if result is None:
                return
            runs.append(result)
            if "p99_ms" not in result:
                for figure in names:
                    self.figures[figure].missing = "n/a (no signal fired by the paced events)"
                return
            self.figures["latency_p50_ms"].runs.append(result["p50_ms"])
            self.figures["latency_p99_ms"].runs.append(result["p99_ms"])
            say(
                f"  p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms over "
                f"{result['signals_matched']} signals; offered {result['offered_eps']:,.0f}/s, "
                f"achieved {result['achieved_eps']:,.0f}/s; {cpu_line(result['cpu'])}"
            )
            self.check_quiet(f"latency {of}", result["cpu"])

    @contextmanager
    def latency_broker(self, ctx: detector.Context) -> Iterator[detector.Context]:
        """The broker of a latency run: on Tansu one of its own, on Kafka the run's.

        Tansu keeps every record in memory and answers more slowly the more it holds: after
        the throughput runs (about 1.5 million records) p50 was 59-94 ms instead of 42-48 ms.
        A Kafka broker finds an offset through its index, and a fresh one would be measured
        while its JVM is still compiling: in a 10 s run on a fresh broker, its JIT compiler
        threads took about a fifth of a core and p50 was seconds.
        """
        if not ctx.tansu:
            yield ctx
            return
        with BROKERS[self.args.broker](log_dir=self.workdir) as broker:
            assert broker.process is not None
            yield replace(ctx, bootstrap=broker.bootstrap, broker_pid=broker.process.pid)

    def state(self, ctx: detector.Context) -> None:
        accounts = self.args.state_accounts
        name = f"{self.run_id}-state"
        say(f"state_bytes_per_account: worker {name}, {accounts:,} new accounts")
        result = self.attempt(
            ["state_bytes_per_account"],
            "state_bytes_per_account",
            lambda: detector.state_memory(ctx, name, accounts),
        )
        if result is not None:
            self.details["state"] = result
            self.figures["state_bytes_per_account"].runs.append(result["bytes_per_account"])
            say(
                f"  {result['bytes_per_account']:,.0f} bytes per account (RSS "
                f"{result['rss_before_mb']} -> {result['rss_middle_mb']} -> "
                f"{result['rss_after_mb']} MiB; second half alone "
                f"{result['second_half_bytes_per_account']:,.0f} bytes per account; the stored "
                f"table value {result['state_value_bytes']:.0f} bytes)"
            )

    def backtest(self) -> None:
        figure = self.figures["backtest_eps"]
        if not backtest.available():
            figure.missing = "n/a (backtest not built)"
            say("backtest_eps: n/a (streams.backtest does not exist yet)")
            return
        args = self.args
        say("backtest_eps: simulating the input file")
        prepared = self.attempt(
            ["backtest_eps"],
            "backtest input",
            lambda: backtest.prepare(self.workdir, args.accounts, args.days, args.seed),
        )
        if prepared is None:
            return
        events_path, outcomes_path, count = prepared
        try:
            for run in range(1, args.runs + 1):
                say(f"backtest_eps run {run}/{args.runs}: {count:,} events on one core")
                eps = self.attempt(
                    ["backtest_eps"],
                    f"backtest_eps run {run}",
                    lambda: backtest.run_once(events_path, outcomes_path, count, self.workdir),
                )
                if eps is not None:
                    figure.runs.append(eps)
                    say(f"  backtest_eps {eps:,.0f}")
        finally:
            events_path.unlink(missing_ok=True)  # tens of MB; the logs stay
            outcomes_path.unlink(missing_ok=True)

    def big_account(self) -> None:
        """One account of each size in this process, once: its figures are deterministic
        but for the events per second."""
        names = [name for name in self.figures if name.startswith("big_account_")]
        say(f"big accounts of {', '.join(f'{n:,}' for n in big_account.SIZES)} users, in process")
        result = self.attempt(names, "big accounts", lambda: big_account.run(self.args.seed))
        if result is None:
            return
        for measured in result["accounts"]:
            size = f"big_account_{measured['users'] // 1000}k"
            self.figures[f"{size}_eps"].runs.append(measured["eps"])
            self.figures[f"{size}_state_bytes"].runs.append(measured["state_bytes"])
            say(f"  {measured}")
        busy = result["busy"]
        self.figures["big_account_busy_changelog_bytes_per_s"].runs.append(
            busy["changelog_bytes_per_s"]
        )
        say(f"  busy: {busy}")
        self.details["big_account"] = result

    def ordered(self) -> list[Figure]:
        figures = self.figures
        return [
            *figures.values(),
            ratio(
                "detector_single_eps / faust_noop_eps",
                figures["detector_single_eps"],
                figures["faust_noop_eps"],
                0.7,
            ),
            ratio(
                "detector_batch_eps / raw_consume_eps",
                figures["detector_batch_eps"],
                figures["raw_consume_eps"],
                0.5,
            ),
        ]


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    run_id = f"bench-{uuid4().hex[:8]}"
    workdir = ROOT / ".run" / "bench" / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    redis_url = Settings().redis_url
    bench = Bench(args, run_id, workdir)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    broker: BrokerProcess | None = None
    outcome = "complete"
    say(f"{run_id}: logs and scratch files under {workdir}")
    try:
        check_redis(redis_url)
        broker = BROKERS[args.broker](log_dir=workdir)
        say(f"starting the {broker.name}")
        broker.start()
        assert broker.process is not None
        ctx = detector.Context(
            run_id,
            broker.bootstrap,
            broker.process.pid,
            args.broker == "tansu",
            redis_url,
            args.partitions,
            workdir,
        )
        bench.run(ctx)
    except KeyboardInterrupt:
        outcome = "interrupted"
        say("interrupted: stopping, and reporting what was measured")
    except (BenchError, BrokerStartError) as error:
        print(f"error: {error}", file=sys.stderr)
        outcome = "failed"
    finally:
        stop_all()
        if broker is not None:
            broker.stop()
        try:
            delete_prefix(redis_url, f"{run_id}-")
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the results
            say(f"could not delete Redis keys under {run_id}-: {error}")
    figures = bench.ordered()
    print(table(figures))
    warning = bench.speed_warning()
    if warning:
        print(f"\n{warning}")
    if bench.disturbed:
        print(
            f"\nother processes were busy during {len(bench.disturbed)} measurement(s), "
            "whose figures are suspect:\n  " + "\n  ".join(bench.disturbed)
        )
    write_results(
        {
            "run_id": run_id,
            "outcome": outcome,
            "started_at": started_at.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - started, 1),
            "arguments": {key: value for key, value in vars(args).items()},
            "machine": machine(redis_url),
            "figures": {figure.name: figure.as_json() for figure in figures},
            "disturbed": bench.disturbed,
            "machine_speed": bench.speeds,
            "details": bench.details,
        }
    )
    say(f"wrote {RESULTS.relative_to(ROOT)} ({outcome}, {time.monotonic() - started:.0f}s)")
    return {"complete": 0, "interrupted": 130, "failed": 1}[outcome]


if __name__ == "__main__":
    sys.exit(main())

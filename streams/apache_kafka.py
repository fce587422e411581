"""An Apache Kafka 4.x broker (KRaft, broker and controller in one JVM) started by the project."""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from streams.embedded import BrokerProcess, BrokerStartError, free_port, serve
from streams.settings import ROOT

ENSURE_SCRIPT = ROOT / "scripts" / "ensure-kafka.sh"
LOG_CONFIG = ROOT / "scripts" / "kafka" / "log4j2.properties"
HEAP = "512m"
# The broker's settings that docker-compose.yml repeats (tests/unit/test_operations_files.py
# checks it); listeners, ports and paths are added per broker.
SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    # One broker: internal topics cannot be replicated.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # A group's first member is not held back waiting for others.
    "group.initial.rebalance.delay.ms": "0",
}
# A broker for one machine's tests: few threads, and few partitions for the group
# coordinator's topic, which is created while the broker starts.
SMALL = {
    "offsets.topic.num.partitions": "4",
    "num.network.threads": "2",
    "num.io.threads": "4",
}


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64. One that starts with "-" would
    be read by kafka-storage as an option (about 1 start in 64 failed so), so none does."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(BrokerProcess):
    """A single-node Apache Kafka on a loopback port; its data is removed when it stops.

    The jars come from Maven Central through scripts/ensure-kafka.sh (cached after the
    first run, which installs Java and Maven if missing).
    """

    name = "Apache Kafka broker"
    kind = "kafka"
    start_timeout = 90.0  # a cold JVM on a busy machine

    def __init__(self, port: int | None = None, log_dir: Path | str = ".run") -> None:
        super().__init__(port, log_dir)
        self.controller_port = free_port()
        self.data_dir = self.log_dir / f"kafka-{self.port}-data"

    def command(self) -> list[str]:
        classpath = f"{_jars()}/*"
        java = ["java", f"-Xmx{HEAP}", f"-Dlog4j2.configurationFile={LOG_CONFIG}"]
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        properties = self.data_dir / "server.properties"
        properties.write_text("".join(f"{key}={value}\n" for key, value in self.settings().items()))
        # KRaft storage must be formatted with a cluster id before the first start.
        cluster_id = new_cluster_id()
        formatted = subprocess.run(
            [*java, "-cp", classpath, "kafka.tools.StorageTool", "format"]
            + ["-t", cluster_id, "-c", str(properties)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if formatted.returncode != 0:
            raise BrokerStartError(
                f"formatting Kafka's storage failed: {formatted.stdout}{formatted.stderr}"
            )
        return [*java, "-cp", classpath, "kafka.Kafka", str(properties)]

    def settings(self) -> dict[str, str]:
        """server.properties: SETTINGS, SMALL, this broker's listeners and data directory."""
        listener = f"PLAINTEXT://{self.bootstrap}"
        return {
            **SETTINGS,
            **SMALL,
            "listeners": f"{listener},CONTROLLER://127.0.0.1:{self.controller_port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "advertised.listeners": listener,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str((self.data_dir / "log").resolve()),
        }

    @staticmethod
    async def probe(admin: AIOKafkaAdminClient) -> None:
        # Kafka creates the group coordinator's topic at the first FindCoordinator; until
        # its partitions have a leader, a worker's group join logs errors.
        await admin.find_coordinator("expansion-detector-probe")

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _jars() -> str:
    """The directory of Kafka's jars (downloaded on the first call on a machine)."""
    found = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)], stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if found.returncode != 0:
        raise BrokerStartError(f"{ENSURE_SCRIPT.name} failed:\n{found.stderr.strip()}")
    return found.stdout.strip()


def main(argv: list[str]) -> int:
    """Run `python -m streams kafka [--port N]` until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m streams kafka", description="Run an Apache Kafka broker (KRaft)."
    )
    parser.add_argument("--port", type=int, help="loopback port to listen on (default: a free one)")
    args = parser.parse_args(argv)

    return serve(KafkaBroker(port=args.port))

"""What operations teams see: a real Prometheus scraping the worker, shutdown, health, logs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import healthy_account, metrics_of, seats, values, wait_for_metric
from harness import committed

from streams.embedded import free_port
from streams.settings import ROOT

ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"


def promtool() -> str:
    """Debian's promtool, installed by the project's script when missing, never skipped."""
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        subprocess.run([ROOT / "scripts" / "ensure-prometheus.sh"], check=True)
    return "promtool"


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = orjson.loads(answer.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def scalar(prometheus: str, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def feed_saturation(kafka_io: Any, env: dict[str, str], account: str = "acme") -> None:
    """Ten of ten seats on a healthy account: one seat_saturation signal, plus one DLQ record."""
    topic = env["TOPIC_EVENTS"]
    batch = {"events": [healthy_account(account), *seats(account, 10)]}
    kafka_io.produce(topic, orjson.dumps(batch), key=account.encode())
    kafka_io.produce(topic, b"{not json", key=account.encode())


@pytest.fixture
def prometheus_server(tmp_path: Path):
    """Start Debian's prometheus scraping the given worker every second, with our alert rules."""
    promtool()
    started: list[subprocess.Popen[bytes]] = []

    def start(worker: Any) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {ALERTS}\n"
            "scrape_configs:\n  - job_name: expansion-detector\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{worker.env['WEB_PORT']}']\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.terminate()
        process.wait(20)


def test_prometheus_scrapes_the_worker_and_loads_the_alert_rules(
    worker_factory, kafka_io, prometheus_server
):
    worker = worker_factory()
    feed_saturation(kafka_io, worker.env)
    wait_for_metric(worker, 'expansion_signals_total{route="csm",trigger="seat_saturation"} 1.0')
    prometheus = prometheus_server(worker)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            # the state gauges are set every 15 s; once they are in, the whole set is
            if (scalar(prometheus, "expansion_accounts_in_state") or 0) >= 1:
                break
        except OSError:
            pass  # not listening yet
        time.sleep(1)
    assert scalar(prometheus, 'up{job="expansion-detector"}') == 1
    assert scalar(prometheus, "sum(expansion_events_total)") == 11
    assert scalar(prometheus, 'expansion_signals_total{trigger="seat_saturation"}') == 1
    assert scalar(prometheus, 'expansion_events_rejected_total{reason="not_json"}') == 1
    assert scalar(prometheus, "expansion_accounts_in_state") == 1
    assert scalar(prometheus, "expansion_active_accounts") == 1
    assert scalar(prometheus, 'expansion_trigger_reach_ratio{trigger="seat_saturation"}') == 1
    assert scalar(prometheus, 'expansion_trigger_reach_ratio{trigger="usage_ceiling"}') == 0
    assert scalar(prometheus, "expansion_redis_up") == 1
    assert scalar(prometheus, "sum(expansion_consumer_lag)") == 0
    assert scalar(prometheus, "expansion_signal_latency_seconds_count") == 1
    assert 0 < (scalar(prometheus, "expansion_state_bytes") or 0) < 4096
    assert 0 < time.time() - (scalar(prometheus, "expansion_last_message_timestamp_seconds") or 0)
    [build] = query(prometheus, "expansion_build_info")
    assert len(build["metric"]["rules_digest"]) >= 8

    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5) as answer:
        groups = orjson.loads(answer.read())["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"ExpansionRedisDown", "ExpansionNoEvents"} <= loaded, loaded
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_promtool_accepts_the_metrics_and_the_alert_rules(worker_factory, kafka_io):
    worker = worker_factory()
    feed_saturation(kafka_io, worker.env)
    wait_for_metric(worker, "expansion_signal_latency_seconds_count 1.0")
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "metrics"], input=metrics_of(worker).encode(), capture_output=True
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    rules = subprocess.run([tool, "check", "rules", ALERTS], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_sigterm_commits_offsets_and_a_restart_reads_nothing_twice(worker_factory, kafka_io):
    worker = worker_factory()
    env = worker.env
    accounts = [f"acct-{n}" for n in range(6)]
    for account in accounts:
        feed_saturation(kafka_io, env, account)
    signals = kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 6, timeout=45)
    assert len(signals) == 6

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0, worker.log_tail()
    partitions = range(int(env["TOPIC_PARTITIONS"]))
    ends = kafka_io.end_offsets(env["TOPIC_EVENTS"], partitions)
    offsets = committed(
        kafka_io.bootstrap, env["APP_ID"], env["TOPIC_EVENTS"], int(env["TOPIC_PARTITIONS"])
    )
    # every partition that received events is committed up to its end
    assert {p: offsets[p] for p, end in ends.items() if end} == {p: e for p, e in ends.items() if e}
    assert "Traceback" not in worker.log_path.read_text()

    restarted = worker_factory(like=worker)
    feed_saturation(kafka_io, env, "late-comer")
    after = kafka_io.consume(env["TOPIC_SIGNALS"], lambda r: len(r) >= 7, timeout=45)
    assert [orjson.loads(r["value"])["account_id"] for r in after].count("late-comer") == 1
    decisions = values(kafka_io.consume(env["TOPIC_DECISIONS"], lambda r: False, timeout=3))
    assert len(after) == 7 and not decisions, restarted.log_tail()


def test_json_logs_one_line_per_event_of_interest(worker_factory, kafka_io):
    worker = worker_factory(LOG_FORMAT="json")
    feed_saturation(kafka_io, worker.env)
    wait_for_metric(worker, 'expansion_events_rejected_total{reason="not_json"} 1.0')
    wait_for_metric(worker, "expansion_signal_latency_seconds_count 1.0")
    worker.stop()
    lines = [orjson.loads(line) for line in worker.log_path.read_text().splitlines()]
    messages = [line["message"] for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert sum(m.startswith("signal ") and "trigger=seat_saturation" in m for m in messages) == 1
    assert sum(m.startswith("rejected to DLQ reason=not_json") for m in messages) == 1
    assert not any("traceback" in line for line in lines), messages


def test_readyz_reports_broker_partitions_and_redis(worker_factory):
    worker = worker_factory()
    with urllib.request.urlopen(f"{worker.url}/readyz", timeout=5) as answer:
        body = orjson.loads(answer.read())
    assert body["ready"] is True and body["broker"] is True and body["redis"] is True
    assert len(body["partitions"]) == 2 * int(worker.env["TOPIC_PARTITIONS"])
    with urllib.request.urlopen(f"{worker.url}/healthz", timeout=5) as answer:
        assert orjson.loads(answer.read()) == {"status": "up"}

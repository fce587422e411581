"""The operations files agree with the project: compose stack, Dockerfile, Prometheus, Grafana.

No Docker engine runs here, so docker-compose.yml is parsed and checked against what the code
really reads and exports: service names and ports, the settings' environment variable names,
mounted paths, the metrics every alert and dashboard query names. promtool (Debian's
Prometheus) validates the config and the rules and runs the rule unit tests.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import prometheus_client
import pytest
import yaml

import streams.io.metrics as worker_metrics
from streams import apache_kafka
from streams.rules import load as load_rules
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
ALERT_TESTS_DAYS = PROMETHEUS_DIR / "alerts.days.test.yml"  # evaluated every 10 minutes
GRAFANA_DIR = ROOT / "config" / "grafana"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = GRAFANA_DIR / "dashboards" / "expansion-detector.json"
README = ROOT / "README.md"

REQUIRED_SERVICES = {"kafka", "redis", "worker", "simulator", "prometheus", "grafana"}
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
WEB_PORT_DEFAULT = Settings.model_fields["web_port"].default


# ----------------------------------------------------------------------------- helpers


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose syntaxes it uses."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def command(name: str) -> list[str]:
    cmd = service(name).get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def mounts(name: str) -> list[tuple[str, str, bool]]:
    """(source, container target, is a bind mount of a host path) for a service's volumes."""
    found = []
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume["target"])
            bind = volume.get("type") == "bind"
        else:
            source, target = volume.split(":")[:2]
            bind = source.startswith((".", "/", "~"))
        found.append((source, target, bind))
    return found


def host_path(source: str) -> Path:
    """The repository path a bind mount's source names (compose resolves it from its file)."""
    assert not source.startswith(("/", "~")), f"{source}: mount a path inside the repository"
    return (COMPOSE.parent / source).resolve()


def host_path_for(name: str, container_path: str) -> Path:
    """The host path that `container_path` in service `name` comes from, through its mounts."""
    wanted = PurePosixPath(container_path)
    for source, target, bind in mounts(name):
        if not bind:
            continue
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return host_path(source).joinpath(*wanted.relative_to(target_path).parts)
    raise AssertionError(f"{container_path} is not mounted from the repository into {name}")


def container_ports(name: str) -> dict[int, int]:
    """{container port: host port} of a service's published ports."""
    published = {}
    for entry in service(name).get("ports") or []:
        if isinstance(entry, dict):
            published[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/")[0].split(":")
        published[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return published


def healthcheck_text(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def worker_web_port() -> int:
    return int(environment("worker").get("WEB_PORT", WEB_PORT_DEFAULT))


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# ------------------------------------------------------------------ metric name checks

PROMQL_FUNCTIONS = frozenset(
    "abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil "
    "changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week "
    "day_of_year days_in_month deg delta deriv exp floor histogram_count "
    "histogram_fraction histogram_quantile histogram_stddev histogram_stdvar "
    "histogram_sum holt_winters hour idelta increase irate label_join label_replace "
    "last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month "
    "pi predict_linear present_over_time quantile_over_time rad rate resets round scalar "
    "sgn sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan "
    "tanh time timestamp vector year".split()
)
PROMQL_AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split()
)
PROMQL_KEYWORDS = frozenset(
    "and or unless by without on ignoring group_left group_right offset bool atan2 inf nan".split()
)
# Metrics Prometheus itself attaches to every scrape target.
SCRAPE_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
OUR_METRIC = re.compile(r"expansion_[a-z0-9_]+")


@cache
def exported_metrics() -> frozenset[str]:
    """Every sample name the worker's registry can expose (after importing streams.io.metrics).

    Families with labels have no samples until a label set is used, so names are derived from
    each family's name and type, the way prometheus_client writes its samples.
    """
    assert worker_metrics.EVENTS is not None  # the worker's metrics are registered
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        "summary": ("", "_count", "_sum"),
        "info": ("_info",),
        "stateset": ("",),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (no functions, keywords or label names)."""
    text = STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries, $__rate_interval
    text = LABEL_LISTS.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        token = match.group()
        following = text[match.end() :].lstrip()
        if token in PROMQL_KEYWORDS:
            continue
        if following.startswith("(") and token in PROMQL_FUNCTIONS | PROMQL_AGGREGATIONS:
            continue
        names.add(token)
    return names


def check_expr(expr: str, where: str) -> set[str]:
    """Assert `expr` names only exported metrics; return the metric names it uses."""
    known = exported_metrics()
    stripped = STRINGS.sub('""', expr)
    ours = set(OUR_METRIC.findall(stripped))
    unknown_ours = sorted(ours - known)
    assert not unknown_ours, f"{where}: the worker exports no {unknown_ours}: {expr}"
    names = metric_names(expr)
    unknown = sorted(names - known - SCRAPE_METRICS)
    assert not unknown, f"{where}: unknown metric or identifier {unknown}: {expr}"
    assert names, f"{where}: selects no metric: {expr}"
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# ------------------------------------------------------------------------- compose file


def test_compose_defines_every_service_of_the_stack() -> None:
    assert REQUIRED_SERVICES <= set(compose()["services"])


@pytest.mark.parametrize("name", sorted(REQUIRED_SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = service(name).get("healthcheck")
    assert check and not check.get("disable"), f"{name} has no healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL"), check["test"]


@pytest.mark.parametrize("name", sorted(REQUIRED_SERVICES))
def test_images_are_pinned(name: str) -> None:
    spec = service(name)
    if "build" in spec:
        assert spec["build"] in (".", {"context": "."}), spec["build"]
        return
    image = spec["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest", f"{name}: pin a tag, not {image!r}"


def test_kafka_is_a_single_kraft_node_with_a_listener_for_the_network_and_the_host() -> None:
    assert service("kafka")["image"].startswith("apache/kafka:")
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env), "KRaft mode: no ZooKeeper"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    listeners = dict(
        (item.split("://")[0], host_port(item.split("://")[1]))
        for item in env["KAFKA_LISTENERS"].split(",")
    )
    advertised = dict(
        (item.split("://")[0], host_port(item.split("://")[1]))
        for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert voters.endswith(f":{listeners[env['KAFKA_CONTROLLER_LISTENER_NAMES']][1]}")
    # every advertised listener is one the broker listens on, on the same port
    for name, (_, port) in advertised.items():
        assert listeners[name][1] == port, name
    # the host reaches the broker through a published port advertised as localhost
    published = container_ports("kafka")
    assert any(
        host in ("localhost", "127.0.0.1") and published.get(port) == port
        for host, port in advertised.values()
    ), f"no host listener published: {advertised}, ports {published}"
    assert "/opt/kafka/bin/" in healthcheck_text("kafka")


def test_compose_kafka_is_the_version_and_has_the_settings_the_tests_run() -> None:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+)</kafka.version>", pom)
    assert version and service("kafka")["image"] == f"apache/kafka:{version.group(1)}"
    env = environment("kafka")
    for name, value in apache_kafka.SETTINGS.items():
        assert env.get(f"KAFKA_{name.upper().replace('.', '_')}") == value, name


def test_named_volumes_are_declared_and_used() -> None:
    declared = set(compose().get("volumes") or {})
    used = set()
    for name in compose()["services"]:
        for source, _, bind in mounts(name):
            if not bind:
                assert source in declared, f"{name}: volume {source!r} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {sorted(declared - used)}"
    for name in ("kafka", "redis", "worker", "prometheus", "grafana"):
        assert any(not bind for _, _, bind in mounts(name)), f"{name} keeps its data nowhere"


def test_every_mounted_host_path_exists_in_the_repository() -> None:
    for name in compose()["services"]:
        for source, target, bind in mounts(name):
            if bind:
                path = host_path(source)
                assert ROOT in path.parents, f"{name}: {source} is outside the repository"
                assert path.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_dependencies_exist_and_wait_for_health() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        depends = spec.get("depends_on") or {}
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown {dependency}"
    conditions = {
        name: {dep: (cond or {}).get("condition") for dep, cond in spec["depends_on"].items()}
        for name, spec in services.items()
        if isinstance(spec.get("depends_on"), dict)
    }
    assert conditions["worker"] == {"kafka": "service_healthy", "redis": "service_healthy"}
    assert conditions["simulator"]["worker"] == "service_healthy"
    assert conditions["grafana"]["prometheus"] == "service_healthy"


@pytest.mark.parametrize("name", ["worker", "simulator"])
def test_environment_names_are_settings_the_worker_reads(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(name)
    unknown = sorted(set(env) - SETTINGS_ENV)
    assert not unknown, f"{name}: Settings reads no {unknown} (known: {sorted(SETTINGS_ENV)})"
    for key in SETTINGS_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Settings()  # every value parses


def test_worker_connects_to_the_compose_kafka_and_redis() -> None:
    env = environment("worker")
    host, port = host_port(env["KAFKA_BOOTSTRAP"])
    assert host == "kafka"
    assert f"://kafka:{port}" in environment("kafka")["KAFKA_ADVERTISED_LISTENERS"]
    redis_url = urlsplit(env["REDIS_URL"])
    assert redis_url.scheme == "redis"
    assert redis_url.hostname == "redis"
    redis_port = 6379
    redis_command = command("redis")
    if "--port" in redis_command:
        redis_port = int(redis_command[redis_command.index("--port") + 1])
    assert redis_url.port == redis_port
    assert env["LOG_FORMAT"] == "json"


def test_worker_runs_the_repository_rules_file() -> None:
    rules_file = environment("worker")["RULES_FILE"]
    path = host_path_for("worker", rules_file)
    assert path == ROOT / "config" / "rules.yaml"
    load_rules(path)  # the file validates
    assert command("worker")[-3:] == ["-m", "streams", "worker"]


def test_worker_publishes_its_web_port_and_checks_readiness_on_it() -> None:
    port = worker_web_port()
    assert port == WEB_PORT_DEFAULT
    assert container_ports("worker").get(port) == port
    check = healthcheck_text("worker")
    assert f":{port}/readyz" in check
    assert "python" in check  # no curl in the slim image


def test_simulator_writes_to_the_compose_kafka_with_options_the_cli_has() -> None:
    args = command("simulator")
    assert args[:4] == ["python", "-m", "streams", "simulate"]
    assert args[args.index("--kafka") + 1] == environment("worker")["KAFKA_BOOTSTRAP"]
    assert "--rate" in args
    assert service("simulator").get("image") == service("worker").get("image")
    options = [arg for arg in args[4:] if arg.startswith("--")]
    usage = subprocess.run(
        [sys.executable, "-m", "streams", "simulate", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert usage.returncode == 0, usage.stderr
    missing = [option for option in options if option not in usage.stdout]
    assert not missing, f"python -m streams simulate has no {missing}:\n{usage.stdout}"


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_dockerfile_builds_a_non_root_worker_image_that_exposes_the_web_port() -> None:
    rows = dockerfile_instructions()
    assert rows[0] == ("FROM", "python:3.11-slim")
    values = {keyword: [rest for k, rest in rows if k == keyword] for keyword, _ in rows}
    exposed = {int(port.split("/")[0]) for rest in values["EXPOSE"] for port in rest.split()}
    assert exposed == {WEB_PORT_DEFAULT} == {worker_web_port()}
    assert values["USER"] and values["USER"][-1] not in ("root", "0")
    assert any("pip install" in rest for rest in values["RUN"])
    (health,) = values["HEALTHCHECK"]
    assert "/healthz" in health and "python" in health
    assert json.loads(values["CMD"][-1]) == ["python", "-m", "streams", "worker"]
    for rest in values["COPY"]:
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
    # the image's default rules path is the file the compose stack mounts over it
    env = " ".join(values["ENV"])
    assert f"RULES_FILE={environment('worker')['RULES_FILE']}" in env


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".run", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= patterns
    assert {"streams", "pyproject.toml", "README.md", "config"}.isdisjoint(patterns)


# --------------------------------------------------------------------------- Prometheus


def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text())


def test_prometheus_scrapes_the_worker_service_on_its_web_port() -> None:
    (job,) = [
        job
        for job in prometheus_config()["scrape_configs"]
        if job["job_name"] == "expansion-detector"
    ]
    targets = [t for config in job["static_configs"] for t in config["targets"]]
    assert targets == [f"worker:{worker_web_port()}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    interval = job.get("scrape_interval", prometheus_config()["global"]["scrape_interval"])
    assert interval.endswith("s") and 5 <= int(interval[:-1]) <= 15
    # the alerts select the job by this name
    assert all(
        'job="expansion-detector"' in rule["expr"]
        for rule in alert_rules()
        if "up{" in rule["expr"]
    )


def test_prometheus_loads_its_config_and_rules_from_the_mounted_directory() -> None:
    flags = dict(arg.split("=", 1) for arg in command("prometheus") if "=" in arg)
    config_file = flags["--config.file"]
    assert host_path_for("prometheus", config_file) == PROMETHEUS_CONFIG
    rule_files = prometheus_config()["rule_files"]
    assert rule_files, "no rule files"
    for rule_file in rule_files:
        in_container = PurePosixPath(config_file).parent / rule_file
        assert host_path_for("prometheus", str(in_container)).exists(), rule_file
    assert "alerts.yml" in rule_files
    assert container_ports("prometheus").get(9090) == 9090
    assert "localhost:9090/-/ready" in healthcheck_text("prometheus")


@cache
def promtool() -> str:
    """Debian's promtool; installed by scripts/ensure-prometheus.sh when missing."""
    found = shutil.which("promtool") or (Path("/usr/bin/promtool").exists() and "/usr/bin/promtool")
    if not found:
        subprocess.run([str(ROOT / "scripts" / "ensure-prometheus.sh")], check=True, timeout=900)
        found = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(found).exists(), "promtool is missing after scripts/ensure-prometheus.sh"
    return str(found)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", str(PROMETHEUS_CONFIG)],
        ["check", "rules", str(ALERTS)],
        ["test", "rules", str(ALERT_TESTS), str(ALERT_TESTS_DAYS)],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts_the_config_and_the_rules(args: list[str]) -> None:
    done = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    assert "SUCCESS" in done.stdout


# ------------------------------------------------------------------------------- alerts

REQUIRED_ALERTS = {
    "ExpansionTriggerReachTooHigh": {"expansion_trigger_accounts", "expansion_active_accounts"},
    "ExpansionTriggerReachTooLow": {"expansion_trigger_accounts", "expansion_active_accounts"},
    "ExpansionDlqRateHigh": {"expansion_events_rejected_total", "expansion_events_total"},
    "ExpansionConsumerLagGrowing": {"expansion_consumer_lag"},
    "ExpansionNoEvents": {"expansion_last_message_timestamp_seconds", "expansion_events_total"},
    "ExpansionRedisDown": {"expansion_redis_up"},
    "ExpansionSignalLatencyHigh": {"expansion_signal_latency_seconds_bucket"},
}


def test_every_alert_expression_names_only_exported_metrics() -> None:
    used: dict[str, set[str]] = {}
    for rule in alert_rules():
        used[rule["alert"]] = check_expr(rule["expr"], f"alert {rule['alert']}")
    for alert, metrics in REQUIRED_ALERTS.items():
        assert alert in used, f"missing alert {alert}"
        assert metrics <= used[alert], f"{alert} should use {sorted(metrics)}"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_link() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        expected = f"README.md#runbook-{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"] == expected, rule["alert"]


def test_reach_alerts_need_enough_active_accounts_and_latency_alert_states_the_budget() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name in ("ExpansionTriggerReachTooHigh", "ExpansionTriggerReachTooLow"):
        assert "sum(expansion_active_accounts) >= 50" in rules[name]["expr"]
    assert "> 0.40" in rules["ExpansionTriggerReachTooHigh"]["expr"]
    assert "< 0.03" in rules["ExpansionTriggerReachTooLow"]["expr"]
    latency = rules["ExpansionSignalLatencyHigh"]
    assert "histogram_quantile(0.99" in latency["expr"] and "> 0.2" in latency["expr"]
    # the budget is a bucket bound, so the p99 against it is exact
    assert 0.2 in worker_metrics.LATENCY._upper_bounds


def readme_anchors() -> set[str]:
    """GitHub's anchors for the README's headings."""
    anchors = set()
    for line in README.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_readme_has_a_runbook_entry_per_alert_and_documents_every_metric() -> None:
    anchors = readme_anchors()
    missing = [
        rule["alert"]
        for rule in alert_rules()
        if rule["annotations"]["runbook_url"].split("#", 1)[1] not in anchors
    ]
    assert not missing, f"README.md has no 'Runbook: <alert>' heading for {missing}"
    documented = set(re.findall(r"`(expansion_[a-z0-9_]+)`", README.read_text()))
    exported = {
        family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        for family in prometheus_client.REGISTRY.collect()
        if family.name.startswith("expansion_")
    }
    assert exported <= documented, f"README.md does not describe {sorted(exported - documented)}"


# ------------------------------------------------------------------------------ Grafana


def test_grafana_mounts_the_provisioning_and_the_dashboards_its_provider_reads() -> None:
    assert host_path_for("grafana", "/etc/grafana/provisioning") == GRAFANA_DIR / "provisioning"
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    for provider in providers:
        assert provider["type"] == "file"
        directory = host_path_for("grafana", provider["options"]["path"])
        assert DASHBOARD in directory.glob("*.json")
    home = environment("grafana").get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path_for("grafana", home) == DASHBOARD
    assert container_ports("grafana").get(3000) == 3000


def test_grafana_datasource_is_the_compose_prometheus_with_the_uid_the_dashboard_uses() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "prometheus"
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.port in container_ports("prometheus")
    uids = set()
    for panel in panels(dashboard()):
        if panel["type"] == "row":
            continue
        uids.add(panel["datasource"]["uid"])
        uids.update(target["datasource"]["uid"] for target in panel["targets"])
    assert uids == {source["uid"]}


def test_dashboard_is_provisionable() -> None:
    board = dashboard()
    assert board["uid"] == "expansion-detector"
    assert board["title"] == "Expansion detector"
    assert board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_every_dashboard_query_names_only_exported_metrics() -> None:
    used: set[str] = set()
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            used |= check_expr(target["expr"], f"panel {panel['title']!r}")
    wanted = {
        "expansion_events_total",
        "expansion_signals_total",
        "expansion_decisions_total",
        "expansion_signal_latency_seconds_bucket",
        "expansion_consumer_lag",
        "expansion_events_rejected_total",
        "expansion_accounts_in_state",
        "expansion_state_bytes",
        "expansion_trigger_accounts",
        "expansion_active_accounts",
        "expansion_redis_up",
        "expansion_broker_errors_total",
        "expansion_publish_retries_total",
        "expansion_build_info",
        "expansion_outcomes_total",
        "expansion_outcome_days_bucket",
        "expansion_won_mrr_total",
        "expansion_outcomes_unmatched_total",
        "expansion_sla_breaches_total",
    }
    assert wanted <= used, f"no panel shows {sorted(wanted - used)}"


def test_dashboard_marks_the_latency_budget_and_the_healthy_reach_band() -> None:
    by_title = {p["title"]: p for p in panels(dashboard()) if p["type"] != "row"}

    def threshold_values(title_start: str) -> set[float]:
        (panel,) = [p for t, p in by_title.items() if t.startswith(title_start)]
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        return {step["value"] for step in steps if step["value"] is not None}

    assert threshold_values("Signal latency") == {0.2}
    assert threshold_values("Trigger reach") == {0.05, 0.15}


def test_metric_name_extraction_ignores_functions_labels_and_strings() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(foo_bucket{job="x_total"}[5m]))) '
        "> 1e3 and on () sum without (instance) (bar) / ignoring (trigger) group_left "
        "count(baz offset 5m) + $__rate_interval_dummy"
    )
    assert metric_names(expr) == {"foo_bucket", "bar", "baz"}

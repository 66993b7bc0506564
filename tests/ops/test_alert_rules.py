"""Alert rules, Alertmanager routing and the Grafana dashboards of Mahavishnu, Session-Buddy and Akosha:
checked by promtool and amtool, and held to the metric names each running server really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.support import ROOT, promql_metric_names, require_tool
from tests.support.client import call_tool, rpc
from tests.support.server import RunningServer
from tests.support.tokens import claims, hs256

PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
SYNTHETIC = {"up"}
"""Series Prometheus records itself for every scrape target (not exported by the server)."""
JOBS = {"Mahavishnu": "mahavishnu", "SessionBuddy": "session-buddy", "Akosha": "akosha"}
"""Alert name prefix -> the scrape job (and service) its rules select."""
RECORD_PREFIXES = {"mahavishnu": "mahavishnu:", "session-buddy": "session_buddy:", "akosha": "akosha:"}

# alert -> (severity, a fragment of its expression that carries the guide's threshold)
THRESHOLDS = {
    "MahavishnuDown": ("P1", "== 0"),
    "MahavishnuAbsent": ("P1", "absent(up"),
    "MahavishnuHighErrorRate": ("P1", "> 0.01"),
    "MahavishnuHighLatency": ("P2", "> 2"),
    "MahavishnuHighMemory": ("P2", "> 0.9"),
    "MahavishnuHighCpu": ("P3", "> 0.85"),
    "MahavishnuBackupStale": ("P2", "> 26 * 3600"),
    "MahavishnuBackupUnverified": ("P2", "== 0"),
    "MahavishnuDeadLettersGrowing": ("P3", "> 0"),
    "MahavishnuCircuitOpen": ("P3", "> 0"),
    "MahavishnuAkoshaOutboxGrowing": ("P3", "[30m])) > 0"),
    "MahavishnuSessionBuddyOutboxGrowing": ("P3", "[30m])) > 0"),
    "SessionBuddyDown": ("P1", "== 0"),
    "SessionBuddyAbsent": ("P1", "absent(up"),
    "SessionBuddyHighErrorRate": ("P1", "> 0.01"),
    "SessionBuddyHighSearchLatency": ("P2", ") > 1"),
    "SessionBuddyHighMemory": ("P2", "> 0.9"),
    "SessionBuddyEmbeddingBacklog": ("P2", "> 1000"),
    "SessionBuddyOutboxStale": ("P2", "> 3600"),
    "SessionBuddyOutboxLagGrowing": ("P3", "[30m])) > 0"),
    "SessionBuddyRotationStuck": ("P2", "[30m])) == 0"),
    "AkoshaDown": ("P1", "== 0"),
    "AkoshaAbsent": ("P1", "absent(up"),
    "AkoshaHighErrorRate": ("P1", "> 0.01"),
    "AkoshaIngestRefused": ("P2", "* 60 > 1"),
    "AkoshaHighSearchLatency": ("P2", ") > 1"),
    "AkoshaHighMemory": ("P2", "> 0.9"),
    "AkoshaEmbeddingBacklog": ("P2", "> 1000"),
    "AkoshaIngestLag": ("P2", "> 3600"),
}


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def job_of(name: str) -> str:
    """The scrape job an alert or recording rule belongs to, from its name."""
    for prefix, job in JOBS.items():
        if name.startswith(prefix):
            return job
    for job, prefix in RECORD_PREFIXES.items():
        if name.startswith(prefix):
            return job
    raise AssertionError(f"{name} names no service ({', '.join(JOBS)})")


def rules_of(job: str) -> list[dict[str, Any]]:
    return [r for r in rules() if job_of(r.get("alert") or r["record"]) == job]


def exported_names(server: RunningServer) -> set[str]:
    """Every series name the server's /metrics can produce (a family's TYPE line counts even
    before its first sample: a labelled counter shows up before anything increments it)."""
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        suffixes = {
            "counter": ["_total", "_created"],
            "histogram": ["_bucket", "_count", "_sum", "_created"],
            "summary": ["_count", "_sum", "_created"],
        }.get(family.type, [])
        names.update(family.name + suffix for suffix in suffixes)
    return names


@pytest.fixture(scope="module")
def exported(
    live_server: RunningServer, session_buddy_server: RunningServer, akosha_server: RunningServer
) -> dict[str, set[str]]:
    """Each service's exported names, by scrape job, after some traffic (so every HTTP series
    has samples too; Session-Buddy's with a token, its auth being on)."""
    rpc(live_server.url, "tools/list")
    token = hs256(claims(aud="session-buddy", role="operator"))
    for tool, arguments in [
        ("store_memory", {"content": "alerts read exported names", "kind": "fact"}),
        ("search_memories", {"query": "exported names"}),
        ("memory_stats", {}),
    ]:
        assert call_tool(session_buddy_server.url, tool, arguments, token=token).status_code == 200
    return {
        "mahavishnu": exported_names(live_server),
        "session-buddy": exported_names(session_buddy_server),
        "akosha": exported_names(akosha_server),
    }


# --- promtool ------------------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", apt="prometheus")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


MOVED_THRESHOLDS = {
    "MahavishnuHighErrorRate": "> 0.05",
    "SessionBuddyHighErrorRate": "> 0.05",
    "SessionBuddyHighSearchLatency": ") > 3",
    "SessionBuddyEmbeddingBacklog": "> 10000",
    "SessionBuddyOutboxStale": "> 7200",
    "SessionBuddyOutboxLagGrowing": "[30m])) > 100",
    "MahavishnuAkoshaOutboxGrowing": "[30m])) > 100",
    "MahavishnuSessionBuddyOutboxGrowing": "[30m])) > 100",
    "SessionBuddyRotationStuck": "[30m])) > 0",
}
"""Alert -> its threshold fragment (THRESHOLDS) moved: the unit tests must notice each."""


@pytest.mark.parametrize(("alert", "moved"), sorted(MOVED_THRESHOLDS.items()))
def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path, alert: str, moved: str) -> None:
    """The unit tests really pin the thresholds: moving one makes them fail, naming its alert."""
    data = yaml.safe_load(ALERTS.read_text())
    (rule,) = [r for group in data["groups"] for r in group["rules"] if r.get("alert") == alert]
    fragment = THRESHOLDS[alert][1]
    assert rule["expr"].count(fragment) == 1, f"{fragment!r} must pick out {alert}'s threshold alone"
    rule["expr"] = rule["expr"].replace(fragment, moved)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text())
    done = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert done.returncode != 0
    assert alert in done.stdout + done.stderr


def test_promtool_check_prometheus_config() -> None:
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert config["rule_files"] == ["alerts.yml"]
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    scraped = {
        "mahavishnu": ["mahavishnu", "mahavishnu-2"],
        "session-buddy": ["session-buddy"],
        "akosha": ["akosha"],
    }
    ports = {"mahavishnu": 8680, "session-buddy": 8678, "akosha": 8682}
    for job_name, replicas in scraped.items():
        job = jobs[job_name]  # the job name is what the rules select (every replica under it)
        assert job["metrics_path"] == "/metrics"
        assert job["static_configs"] == [{"targets": [f"{r}:{ports[job_name]}" for r in replicas]}]
        for service in replicas:
            assert "profiles" not in services[service], f"{service} is scraped, so it must always run"
            assert "monitoring" in services[service]["networks"], f"Prometheus cannot reach {service}"


# --- the rules themselves ---------------------------------------------------------------------------------


def test_the_guides_thresholds_and_severities() -> None:
    found = {rule["alert"]: rule for rule in alert_rules()}
    assert set(found) == set(THRESHOLDS)
    for name, (severity, fragment) in THRESHOLDS.items():
        rule = found[name]
        assert rule["labels"]["severity"] == severity, name
        assert fragment in " ".join(rule["expr"].split()), f"{name}: {fragment!r} not in {rule['expr']!r}"
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook"] == f"docs/RUNBOOK.md#{name.lower()}"
        job = job_of(name)
        assert f'job="{job}"' in rule["expr"], f"{name} must select the {job} job"
        others = [j for j in JOBS.values() if j != job]
        assert not any(f'job="{o}"' in rule["expr"] for o in others), f"{name} selects another job"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def test_resource_limits_in_the_rules_match_the_deployments() -> None:
    limits = {r["record"]: r["expr"] for r in rules() if "record" in r}
    memory = int(re.fullmatch(r"vector\((\d+)\)", limits["mahavishnu:memory_limit_bytes"]).group(1))  # type: ignore[union-attr]
    cpu = float(re.fullmatch(r"vector\(([\d.]+)\)", limits["mahavishnu:cpu_limit_cores"]).group(1))  # type: ignore[union-attr]
    assert memory == 512 * 1024 * 1024
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    k8s_limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert k8s_limits["memory"] == f"{memory // (1024 * 1024)}Mi"
    assert float(k8s_limits["cpu"]) == cpu
    cloud_run = yaml.safe_load((ROOT / "deploy" / "cloudrun" / "service.yaml").read_text())
    assert cloud_run["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == k8s_limits
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["mahavishnu"]
    assert compose["mem_limit"] == f"{memory // (1024 * 1024)}m"
    assert float(compose["cpus"]) == cpu


@pytest.mark.parametrize(("service", "prefix"), [("session-buddy", "session_buddy"), ("akosha", "akosha")])
def test_served_limits_in_the_rules_match_their_deployments(service: str, prefix: str) -> None:
    limits = {r["record"]: r["expr"] for r in rules() if "record" in r}
    memory = int(re.fullmatch(r"vector\((\d+)\)", limits[f"{prefix}:memory_limit_bytes"]).group(1))  # type: ignore[union-attr]
    cpu = float(re.fullmatch(r"vector\(([\d.]+)\)", limits[f"{prefix}:cpu_limit_cores"]).group(1))  # type: ignore[union-attr]
    assert memory == 1024**3
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / f"{service}-deployment.yaml").read_text())
    k8s_limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert k8s_limits == {"cpu": f"{cpu:g}", "memory": f"{memory // 1024**3}Gi"}
    cloud_run = yaml.safe_load((ROOT / "deploy" / "cloudrun" / f"{service}.yaml").read_text())
    assert cloud_run["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == k8s_limits
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"][service]
    assert compose["mem_limit"] == f"{memory // 1024**3}g"
    assert float(compose["cpus"]) == cpu


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", route="/mcp"}[5m]))) > 2 '
        "and on() b:recorded / ignoring(instance) group_left(zone) max without (pod) (c_total offset 1h) "
        "or absent(up{job='m'}) unless time() - d > 26 * 3600"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b:recorded", "c_total", "up", "d"}


@pytest.mark.parametrize("job", sorted(JOBS.values()))
def test_every_metric_in_a_rule_is_exported_by_its_server(exported: dict[str, set[str]], job: str) -> None:
    """Names used by a service's alert rules must appear in that running server's /metrics (the
    real Mahavishnu, the real Session-Buddy); a recording rule used must be one of its own."""
    used: set[str] = set()
    for rule in rules_of(job):
        used |= promql_metric_names(rule["expr"])
    recorded = {r["record"] for r in rules_of(job) if "record" in r}
    assert {n for n in used if ":" in n} <= recorded, "a recording rule is used but not defined"
    missing = sorted(used - recorded - SYNTHETIC - exported[job])
    assert not missing, f"used in deploy/prometheus/alerts.yml but not in {job}'s /metrics: {missing}"


# --- Grafana ---------------------------------------------------------------------------------------------

DASHBOARD_FILES = {"mahavishnu": "mahavishnu.json", "session-buddy": "session-buddy.json"}
"""Each service's dashboard, by scrape job."""


def dashboard(job: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / DASHBOARD_FILES[job]).read_text())
    return data


def dashboard_exprs(job: str) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"]) for panel in dashboard(job)["panels"] for target in panel["targets"]
    ]


def test_every_dashboard_file_is_known() -> None:
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(DASHBOARD_FILES.values())


@pytest.mark.parametrize("job", sorted(DASHBOARD_FILES))
def test_dashboard_is_valid_and_well_formed(job: str) -> None:
    board = dashboard(job)
    assert board["uid"] == f"{job}-overview"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "prometheus"
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert f'job="{job}"' in target["expr"], f"{panel['title']} must select the {job} job"
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/mahavishnu.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("job", sorted(DASHBOARD_FILES))
def test_dashboard_covers_every_alerted_metric(job: str) -> None:
    in_dashboard: set[str] = set()
    for _, expr in dashboard_exprs(job):
        in_dashboard |= promql_metric_names(expr)
    in_alerts: set[str] = set()
    for rule in rules_of(job):
        if "alert" in rule:
            in_alerts |= promql_metric_names(rule["expr"])
    assert in_alerts <= in_dashboard, in_alerts - in_dashboard


@pytest.mark.parametrize("job", sorted(DASHBOARD_FILES))
def test_dashboard_queries_are_valid_promql(tmp_path: Path, job: str) -> None:
    """promtool parses every panel query (as a recording rule in a scratch file)."""
    queries = [{"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(dashboard_exprs(job))]
    scratch = {"groups": [{"name": "dashboard", "rules": queries}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(scratch))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("job", sorted(DASHBOARD_FILES))
def test_every_metric_on_the_dashboard_is_exported(exported: dict[str, set[str]], job: str) -> None:
    used: set[str] = set()
    for _, expr in dashboard_exprs(job):
        used |= promql_metric_names(expr)
    recorded = {r["record"] for r in rules_of(job) if "record" in r}
    missing = sorted(used - recorded - SYNTHETIC - exported[job])
    assert not missing, f"used on the {job} dashboard but not in its /metrics: {missing}"


# --- Alertmanager ------------------------------------------------------------------------------------------


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("amtool", apt="prometheus-alertmanager")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_alertmanager_config_is_valid() -> None:
    done = amtool("check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr
    text = ALERTMANAGER.read_text()
    assert "api_url_file" in text
    assert "routing_key_file" in text
    assert not re.search(r"hooks\.slack\.com|routing_key:\s", text), "credentials belong in files"


@pytest.mark.parametrize(("severity", "receivers"), [("P1", "pager,chat"), ("P2", "chat"), ("P3", "chat")])
def test_alertmanager_routes_by_severity(severity: str, receivers: str) -> None:
    done = amtool(
        "config", "routes", "test", f"--config.file={ALERTMANAGER}", f"severity={severity}", "alertname=X"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == receivers


def test_every_severity_in_the_rules_is_routed() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    routed = {m.split("=", 1)[1].strip('"') for route in config["route"]["routes"] for m in route["matchers"]}
    used = {rule["labels"]["severity"] for rule in alert_rules()}
    assert used <= routed


_MATCHER = re.compile(r'^(?P<label>\w+)(?P<op>=~|=)"(?P<value>[^"]*)"$')


def matches(matchers: list[str], labels: dict[str, str]) -> bool:
    """Alertmanager's `label="value"` and `label=~"regex"` (anchored) matchers, all of them."""
    for matcher in matchers:
        found = _MATCHER.match(matcher)
        assert found, f"unsupported matcher {matcher}"
        value = labels.get(found["label"], "")
        if found["op"] == "=" and value != found["value"]:
            return False
        if found["op"] == "=~" and not re.fullmatch(found["value"], value):
            return False
    return True


def test_a_down_service_silences_only_its_own_lesser_alerts() -> None:
    """While SessionBuddyDown fires, Session-Buddy's P2/P3 alerts are held back and Mahavishnu's
    are not (and the other way round); P1 alerts are never held back."""
    inhibits = yaml.safe_load(ALERTMANAGER.read_text())["inhibit_rules"]
    alerts = [{"alertname": r["alert"], "severity": r["labels"]["severity"]} for r in alert_rules()]
    for source in alerts:
        for target in alerts:
            held = any(
                matches(rule["source_matchers"], source) and matches(rule["target_matchers"], target)
                for rule in inhibits
            )
            down = source["alertname"].endswith(("Down", "Absent"))
            same = job_of(source["alertname"]) == job_of(target["alertname"])
            expected = down and same and target["severity"] in {"P2", "P3"}
            assert held == expected, f"{source['alertname']} holding back {target['alertname']}: {held}"

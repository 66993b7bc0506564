"""Alert rules, Alertmanager routing and the Grafana dashboard: checked by promtool and amtool, and
held to the metric names a running server really exports."""

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
from tests.support.client import rpc
from tests.support.server import RunningServer

PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts_test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "mahavishnu.json"
SYNTHETIC = {"up"}
"""Series Prometheus records itself for every scrape target (not exported by the server)."""

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
}


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


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
def exported(live_server: RunningServer) -> set[str]:
    rpc(live_server.url, "tools/list")  # some traffic, so every HTTP series has samples too
    return exported_names(live_server)


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


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests really pin the thresholds: moving one makes them fail."""
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace("> 0.01", "> 0.05"))
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text())
    done = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert done.returncode != 0
    assert "MahavishnuHighErrorRate" in done.stdout + done.stderr


def test_promtool_check_prometheus_config() -> None:
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert "mahavishnu" in jobs
    assert config["rule_files"] == ["alerts.yml"]


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
        assert 'job="mahavishnu"' in rule["expr"], f"{name} must select the mahavishnu job"


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


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="x", route="/mcp"}[5m]))) > 2 '
        "and on() b:recorded / ignoring(instance) group_left(zone) max without (pod) (c_total offset 1h) "
        "or absent(up{job='m'}) unless time() - d > 26 * 3600"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b:recorded", "c_total", "up", "d"}


def test_every_metric_in_a_rule_is_exported_by_the_server(exported: set[str]) -> None:
    """Names used by alert rules must appear in a running server's /metrics. The workflow and
    backup metrics (mahavishnu_dead_letters, mahavishnu_circuit_open_repos,
    mahavishnu_backup_last_success_timestamp_seconds, mahavishnu_backup_last_verify_success) come
    from other parts of the code base: this test fails until the server exports them."""
    used: set[str] = set()
    for rule in rules():
        used |= promql_metric_names(rule["expr"])
    recorded = recorded_names()
    needed = used - recorded - SYNTHETIC
    assert {n for n in used if ":" in n} <= recorded, "a recording rule is used but not defined"
    missing = sorted(needed - exported)
    assert not missing, f"used in deploy/prometheus/alerts.yml but not in /metrics: {missing}"


# --- Grafana ---------------------------------------------------------------------------------------------


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_is_valid_and_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mahavishnu-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "prometheus"
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/mahavishnu.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_covers_every_alerted_metric() -> None:
    in_dashboard: set[str] = set()
    for _, expr in dashboard_exprs():
        in_dashboard |= promql_metric_names(expr)
    in_alerts: set[str] = set()
    for rule in alert_rules():
        in_alerts |= promql_metric_names(rule["expr"])
    assert in_alerts <= in_dashboard, in_alerts - in_dashboard


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as a recording rule in a scratch file)."""
    queries = [{"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(dashboard_exprs())]
    scratch = {"groups": [{"name": "dashboard", "rules": queries}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(scratch))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_on_the_dashboard_is_exported(exported: set[str]) -> None:
    used: set[str] = set()
    for _, expr in dashboard_exprs():
        used |= promql_metric_names(expr)
    missing = sorted(used - recorded_names() - SYNTHETIC - exported)
    assert not missing, f"used on the dashboard but not in /metrics: {missing}"


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

"""The readiness checker against a real, well-configured deployment and against a broken one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, base_env, free_port, start_server

ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def readiness(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "readiness", "--json", "--alert-rules", str(ALERT_RULES), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, json.loads(result.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_a_production_deployment_scores_high(tmp_path: Path) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    manifest = make_repos(tmp_path, standard_specs())
    env = base_env(
        tmp_path,
        manifest,
        {
            "MAHAVISHNU_ENV": "production",
            "MAHAVISHNU_AUTH_SECRET": SECRET,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "MAHAVISHNU_DATA_DIR": str(tmp_path / "var"),
        },
    )
    server = start_server(tmp_path, env)
    try:
        for command in (["backup", "create"], ["backup", "verify", "latest"]):
            subprocess.run(
                [sys.executable, "-m", "mahavishnu", *command],
                env=env,
                cwd=tmp_path,
                check=True,
                capture_output=True,
                timeout=60,
            )
        code, report = readiness(env, tmp_path, "--url", server.base)
    finally:
        server.stop()
    checks = by_name(report)
    assert len(checks) >= 14
    failed = [name for name, c in checks.items() if c["status"] == "fail"]
    assert failed == [], failed
    for name in (
        "auth_secret",
        "production_mode",
        "database",
        "migrations",
        "backup_fresh",
        "backup_verified",
        "rate_limiting",
        "metrics_endpoint",
        "health_endpoint",
        "manifest",
        "no_secrets_in_files",
    ):
        assert checks[name]["status"] == "pass", (name, checks[name])
    assert report["score"] >= 90
    assert code == 0


def test_a_careless_deployment_fails_with_reasons_and_fixes(tmp_path: Path) -> None:
    (tmp_path / "settings").mkdir()
    leaky = tmp_path / "settings" / "mahavishnu.yaml"
    leaky.write_text(
        "auth_secret: written-into-a-file-which-is-a-bad-idea-0123456789\n"
        "redis_url: redis://admin:hunter2@cache:6379/0\nrate_limit_enabled: false\n"
    )
    env = base_env(tmp_path, tmp_path / "missing-repos.yaml", {"MAHAVISHNU_DATA_DIR": str(tmp_path / "var")})
    env["MAHAVISHNU_CONFIG"] = str(leaky)
    code, report = readiness(env, tmp_path, "--url", f"http://127.0.0.1:{free_port()}")
    checks = by_name(report)
    expected_failures = {
        "no_secrets_in_files",
        "backup_fresh",
        "metrics_endpoint",
        "health_endpoint",
        "manifest",
        "rate_limiting",
    }
    assert expected_failures <= {n for n, c in checks.items() if c["status"] == "fail"}
    for name in expected_failures:
        assert checks[name]["reason"]
        assert checks[name]["fix"]
    assert checks["database"]["reason"] == f"no database at {tmp_path / 'var' / 'mahavishnu.db'}"
    assert not (tmp_path / "var").exists()  # readiness made none
    assert "hunter2" not in json.dumps(report)
    assert report["score"] < 70
    assert code == 1


@pytest.mark.parametrize(("minimum", "expected"), [("0", 0), ("100", 1)])
def test_min_score_sets_the_exit_code(tmp_path: Path, minimum: str, expected: int) -> None:
    env = base_env(tmp_path, None, {"MAHAVISHNU_DATA_DIR": str(tmp_path / "var")})
    code, report = readiness(
        env, tmp_path, "--min-score", minimum, "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert code == expected
    assert 0 <= report["score"] < 100

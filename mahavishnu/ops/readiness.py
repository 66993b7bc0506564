"""The production-readiness checker: real checks against the settings and the running system.

Each check looks at the thing itself (connects to the database, asks the
server for /metrics, reads the backup log, scans the settings files), never
just at whether a file exists. A check passes, warns or fails with a
one-line reason and how to fix it; the score is the weighted share of
passes (a warning counts half), out of 100.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import anyio
import httpx
import yaml
from pydantic import BaseModel

from mahavishnu.ops.backup.manager import BackupManager
from mahavishnu.platform.db import Database
from mahavishnu.platform.settings import MIN_SECRET_BYTES, PlatformSettings, is_loopback

__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "CheckResult",
    "ReadinessCheck",
    "ReadinessContext",
    "ReadinessReport",
    "Status",
    "run_readiness",
]

Status = Literal["pass", "warn", "fail"]
_CREDENTIAL_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
_SECRET_KEYS = re.compile(
    r"^\s*(auth_secret|backup_encryption_key|akosha_api_token|session_encryption_key)\s*:", re.M
)


class CheckResult(BaseModel):
    name: str
    status: Status
    weight: int
    reason: str
    fix: str


class ReadinessReport(BaseModel):
    score: float
    passed: int
    warnings: int
    failed: int
    checks: list[CheckResult]


@dataclass
class ReadinessContext:
    """What a check looks at: the service's settings (any service: the shared checks need only
    the platform's), its database, the running server's URL and the alert rules file."""

    settings: PlatformSettings
    db: Database
    url: str
    alert_rules: Path
    disk_min_free_bytes: int


Check = Callable[[ReadinessContext], Awaitable[tuple[Status, str, str]]]
ReadinessCheck = tuple[str, int, Check]
"""A check's name, its weight in the score, and the check; a service adds its own through
`run_readiness(extra_checks=...)` (Mahavishnu's manifest check lives in `mahavishnu.wiring`)."""
_CHECKS: list[ReadinessCheck] = []


def check(name: str, weight: int) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        _CHECKS.append((name, weight, fn))
        return fn

    return register


OK: Status = "pass"
WARN: Status = "warn"
FAIL: Status = "fail"


@check("auth_secret", 10)
async def _auth_secret(c: ReadinessContext) -> tuple[Status, str, str]:
    s = c.settings
    if s.auth_secret is None and s.auth_public_key_file is None:
        return (
            FAIL,
            "no authentication configured",
            f"set {s.env_prefix}AUTH_SECRET (python3 -c 'import secrets; print(secrets.token_urlsafe(48))')",
        )
    if s.auth_secret is not None and len(s.auth_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
        return (
            FAIL,
            f"auth secret shorter than {MIN_SECRET_BYTES} bytes",
            f"generate a longer {s.env_prefix}AUTH_SECRET",
        )
    return OK, "bearer-token authentication is on with a strong key", ""


@check("production_mode", 5)
async def _production_mode(c: ReadinessContext) -> tuple[Status, str, str]:
    prefix = c.settings.env_prefix
    if c.settings.env == "production":
        return OK, f"{prefix}ENV=production", ""
    return WARN, f"running in {c.settings.env} mode", f"set {prefix}ENV=production"


@check("listen_address", 8)
async def _listen_address(c: ReadinessContext) -> tuple[Status, str, str]:
    host = c.settings.host
    if is_loopback(host):
        return OK, f"listening on loopback ({host})", ""
    if not c.settings.auth_enabled:
        return (
            FAIL,
            f"listening on {host} without authentication",
            f"set {c.settings.env_prefix}AUTH_SECRET or bind to 127.0.0.1",
        )
    return OK, f"listening on {host} with authentication", ""


@check("tls_or_proxy", 6)
async def _tls(c: ReadinessContext) -> tuple[Status, str, str]:
    s = c.settings
    if is_loopback(s.host):
        return OK, "loopback only: TLS is the fronting proxy's job", ""
    if (s.public_url or "").startswith("https://") and s.trusted_proxies:
        return OK, f"served as {s.public_url} behind trusted proxies", ""
    return (
        FAIL,
        "not on loopback, and no HTTPS public_url behind trusted_proxies",
        ("put a TLS-terminating proxy in front; set public_url=https://... and trusted_proxies"),
    )


@check("database", 10)
async def _database(c: ReadinessContext) -> tuple[Status, str, str]:
    missing = c.db.sqlite_path
    if missing is not None and not missing.exists():  # readiness never makes one (read-only)
        return FAIL, f"no database at {missing}", "start the service once, or run: mahavishnu db upgrade"
    if await c.db.ping():
        return OK, f"{c.db.dialect} database answers", ""
    return (
        FAIL,
        f"{c.db.dialect} database unreachable",
        "check POSTGRES_URL / the data directory and the database server",
    )


@check("migrations", 8)
async def _migrations(c: ReadinessContext) -> tuple[Status, str, str]:
    try:
        state = await c.db.schema_state()
    except Exception as exc:
        return FAIL, f"cannot read the schema version ({type(exc).__name__})", "make the database reachable"
    if state.is_current:
        return OK, f"schema at head ({state.head})", ""
    return (
        FAIL,
        f"schema at {state.current or 'nothing'}, code expects {state.head}",
        "run: mahavishnu db upgrade",
    )


@check("backup_fresh", 8)
async def _backup_fresh(c: ReadinessContext) -> tuple[Status, str, str]:
    try:
        last = await BackupManager(c.settings, c.db).last_success("create")
    except Exception as exc:
        return FAIL, f"cannot read the backup log ({type(exc).__name__})", "make the database reachable"
    if last is None:
        return (
            FAIL,
            "no successful backup yet",
            f"run: mahavishnu backup create --service {c.settings.service_name} (and schedule it)",
        )
    age_hours = (datetime.now(UTC) - last.created_at).total_seconds() / 3600
    if age_hours > c.settings.backup_max_age_hours:
        return (
            FAIL,
            f"last backup is {age_hours:.1f} h old",
            f"run: mahavishnu backup create --service {c.settings.service_name}; check the schedule",
        )
    return OK, f"last backup {age_hours:.1f} h ago ({last.archive})", ""


@check("backup_verified", 6)
async def _backup_verified(c: ReadinessContext) -> tuple[Status, str, str]:
    try:
        last = await BackupManager(c.settings, c.db).last_event("verify")
    except Exception as exc:
        return FAIL, f"cannot read the backup log ({type(exc).__name__})", "make the database reachable"
    service = f"--service {c.settings.service_name}"
    if last is None:
        return WARN, "no backup has been verified yet", f"run: mahavishnu backup verify latest {service}"
    if not last.ok:
        return (
            FAIL,
            f"last verification failed: {last.detail}",
            f"investigate, then: mahavishnu backup create {service} && "
            f"mahavishnu backup verify latest {service}",
        )
    return OK, f"last verification passed ({last.archive})", ""


@check("rate_limiting", 6)
async def _rate_limiting(c: ReadinessContext) -> tuple[Status, str, str]:
    s = c.settings
    if not s.rate_limit_enabled:
        return FAIL, "rate limiting is disabled", "set RATE_LIMIT_ENABLED=true"
    if s.redis_url is None:
        if s.env == "production":
            return (
                WARN,
                "in-memory rate limits: each replica has its own budget",
                "set REDIS_URL to share one budget",
            )
        return OK, "in-memory rate limits", ""
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(
        s.redis_url.get_secret_value(), socket_connect_timeout=1, socket_timeout=1
    )
    try:
        await client.ping()
    except Exception as exc:
        return (
            FAIL,
            f"Redis rate-limit backend unreachable ({type(exc).__name__})",
            "check REDIS_URL and the Redis server",
        )
    finally:
        await client.aclose()
    return OK, "rate limits shared through Redis", ""


@check("metrics_endpoint", 6)
async def _metrics(c: ReadinessContext) -> tuple[Status, str, str]:
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            response = await client.get(f"{c.url}/metrics")
    except httpx.HTTPError as exc:
        return (
            FAIL,
            f"{c.url}/metrics does not answer ({type(exc).__name__})",
            "start the server; check --url",
        )
    up = f"{c.settings.metric_prefix}_up"
    if response.status_code != 200 or f"{up} 1.0" not in response.text:
        return (
            FAIL,
            f"{c.url}/metrics answered {response.status_code} without {up} 1",
            "check the server logs",
        )
    return OK, "/metrics answers and the service reports up", ""


@check("health_endpoint", 6)
async def _health(c: ReadinessContext) -> tuple[Status, str, str]:
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            status = (await client.get(f"{c.url}/health")).json().get("status")
    except (httpx.HTTPError, ValueError) as exc:
        return FAIL, f"{c.url}/health does not answer ({type(exc).__name__})", "start the server; check --url"
    if status == "healthy":
        return OK, "/health says healthy", ""
    if status == "degraded":
        return WARN, "/health says degraded", f"curl {c.url}/health and fix the component named there"
    return FAIL, f"/health says {status}", f"curl {c.url}/health"


@check("alert_rules", 5)
async def _alert_rules(c: ReadinessContext) -> tuple[Status, str, str]:
    if not c.alert_rules.is_file():
        return (
            FAIL,
            f"no alert rules at {c.alert_rules}",
            "deploy deploy/prometheus/alerts.yml with Prometheus",
        )
    try:
        groups = (yaml.safe_load(c.alert_rules.read_text()) or {}).get("groups", [])
    except yaml.YAMLError as exc:
        return (
            FAIL,
            f"alert rules are not valid YAML ({exc.__class__.__name__})",
            "fix deploy/prometheus/alerts.yml",
        )
    rules = sum(len(g.get("rules", [])) for g in groups)
    promtool = shutil.which("promtool")
    if promtool is None:
        return (
            WARN,
            f"{rules} rules parse, promtool not installed to check them",
            "apt-get install prometheus",
        )
    result = await anyio.run_process([promtool, "check", "rules", str(c.alert_rules)], check=False)
    if result.returncode != 0:
        return FAIL, "promtool rejects the alert rules", f"promtool check rules {c.alert_rules}"
    return OK, f"{rules} alert rules pass promtool", ""


@check("tracing", 3)
async def _tracing(c: ReadinessContext) -> tuple[Status, str, str]:
    if c.settings.otel_exporter_otlp_endpoint:
        return OK, f"traces exported to {c.settings.otel_exporter_otlp_endpoint}", ""
    return WARN, "no OTLP endpoint: traces stay in the process", "set OTEL_EXPORTER_OTLP_ENDPOINT"


@check("json_logs", 3)
async def _json_logs(c: ReadinessContext) -> tuple[Status, str, str]:
    if c.settings.log_format == "json":
        return OK, "logs are JSON lines on stdout", ""
    return WARN, f"log format is {c.settings.log_format}", f"set {c.settings.env_prefix}LOG_FORMAT=json"


@check("disk_space", 6)
async def _disk(c: ReadinessContext) -> tuple[Status, str, str]:
    folder = c.settings.data_dir.resolve()
    probe = folder if folder.exists() else Path.cwd()
    free = shutil.disk_usage(probe).free
    if free < c.disk_min_free_bytes:
        return FAIL, f"{free / 2**30:.1f} GiB free under {probe}", "free disk space or move data_dir"
    return OK, f"{free / 2**30:.1f} GiB free under {probe}", ""


@check("no_secrets_in_files", 8)
async def _no_secret_files(c: ReadinessContext) -> tuple[Status, str, str]:
    offenders = []
    for path in c.settings.config_files():
        content = path.read_text(errors="replace")
        if _SECRET_KEYS.search(content) or _CREDENTIAL_URL.search(content):
            offenders.append(str(path))
    if offenders:
        return (
            FAIL,
            f"secrets written in {', '.join(offenders)}",
            "move them to environment variables or a secret store",
        )
    return OK, "settings files hold no secrets", ""


async def run_readiness(
    settings: PlatformSettings,
    *,
    url: str | None = None,
    alert_rules: Path | None = None,
    disk_min_free_bytes: int = 1 << 30,
    extra_checks: Sequence[ReadinessCheck] = (),
) -> ReadinessReport:
    """Every shared check, then the service's `extra_checks`, against `settings`' deployment."""
    db = Database.from_settings(settings)
    context = ReadinessContext(
        settings=settings,
        db=db,
        url=(url or settings.resource_url).rstrip("/"),
        alert_rules=alert_rules or Path("deploy/prometheus/alerts.yml"),
        disk_min_free_bytes=disk_min_free_bytes,
    )
    results = []
    try:
        for name, weight, fn in [*_CHECKS, *extra_checks]:
            try:
                status, reason, fix = await fn(context)
            except Exception as exc:  # a broken check is a failed check, never a crash
                status, reason, fix = FAIL, f"check crashed: {type(exc).__name__}", "report this"
            results.append(CheckResult(name=name, status=status, weight=weight, reason=reason, fix=fix))
    finally:
        await db.dispose()
    total = sum(r.weight for r in results)
    earned = sum(r.weight * {"pass": 1.0, "warn": 0.5, "fail": 0.0}[r.status] for r in results)
    return ReadinessReport(
        score=round(100 * earned / total, 1),
        passed=sum(r.status == "pass" for r in results),
        warnings=sum(r.status == "warn" for r in results),
        failed=sum(r.status == "fail" for r in results),
        checks=results,
    )

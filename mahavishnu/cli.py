"""The `mahavishnu` command: one typer app, one sub-command group per area."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mahavishnu.ops.backup.cli import backup_app
from mahavishnu.ops.smoke_cli import smoke_command
from mahavishnu.orchestrator.repos_cli import app as repos_app
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.cli import db_app, dlq_app, run_command, workflows_app
from mahavishnu.platform.auth import ROLES, Role, issue_token
from mahavishnu.platform.errors import ConfigurationError

app = typer.Typer(
    help="Mahavishnu: an MCP server that orchestrates work across many git repositories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # rich tracebacks print local variables, secrets included
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
token_app = typer.Typer(help="Issue bearer tokens for clients.", no_args_is_help=True)
app.add_typer(repos_app, name="repos", help="Find, validate and list the managed repositories.")
app.add_typer(config_app, name="config")
app.add_typer(token_app, name="token")
app.add_typer(backup_app, name="backup")
app.command("smoke")(smoke_command)
app.command("run")(run_command)
app.add_typer(workflows_app, name="workflows")
app.add_typer(dlq_app, name="dlq")
app.add_typer(db_app, name="db")

err = Console(stderr=True, soft_wrap=True, highlight=False)
SCHEMA_CHECK_SECONDS = 15.0
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@app.callback()
def _main() -> None:
    """Command output goes to stdout; log lines of every command but `serve` go to stderr."""
    from mahavishnu.platform.observability import configure_logging

    configure_logging("WARNING", "console", stream=sys.stderr)


def _load(**overrides: object) -> MahavishnuSettings:
    try:
        settings = MahavishnuSettings.load(**overrides)
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (setting: host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (setting: port).")] = None,
    repos: Annotated[Path | None, typer.Option(help="Repository manifest (setting: repos_file).")] = None,
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve one client over stdin/stdout.")] = False,
) -> None:
    """Start the MCP server (Streamable HTTP on /mcp, or stdio)."""
    from mahavishnu.orchestrator.service import create_service
    from mahavishnu.platform.app import build_app, build_stdio
    from mahavishnu.platform.observability import Metrics, configure_logging, configure_tracing, get_logger
    from mahavishnu.platform.server import serve_http, serve_stdio

    settings = _load(host=host, port=port, repos_file=repos)
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr if stdio else sys.stdout)
    try:
        settings.ensure_secure(listening=not stdio)
    except ConfigurationError as exc:
        err.print(f"[red]refusing to start:[/red] {exc.message}")
        raise typer.Exit(2) from None
    for warning in settings.insecure_warnings(listening=not stdio):
        get_logger("mahavishnu.server").warning("insecure_configuration", problem=warning)
    service_version = _version()
    _check_schema(settings)
    tracer_provider = configure_tracing("mahavishnu", service_version, settings.otel_exporter_otlp_endpoint)
    metrics = Metrics()
    try:
        service = create_service(settings, metrics)
        if stdio:
            serve_stdio(build_stdio(service, metrics), service.background)
        else:
            serve_http(build_app(service, metrics), settings)
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    finally:
        tracer_provider.shutdown()  # flush spans still queued for the OTLP exporter


def _check_schema(settings: MahavishnuSettings) -> None:
    """Refuse a schema this version cannot use with one line, before the server starts.

    An unreachable database does not stop the start: the engine waits for it, the rest serves.
    """
    import asyncio

    from mahavishnu.platform.db import Database

    async def check() -> None:
        db = Database(settings.effective_database_url, schema=settings.database_schema)
        try:
            await asyncio.wait_for(db.ensure_schema(upgrade=settings.db_auto_upgrade), SCHEMA_CHECK_SECONDS)
        finally:
            await db.dispose()

    try:
        asyncio.run(check())
    except ConfigurationError as exc:
        err.print(f"[red]refusing to start:[/red] {exc.message}")
        raise typer.Exit(2) from None
    except Exception as exc:  # unreachable: the service starts degraded and keeps trying
        err.print(f"warning: database not reachable at start-up ({type(exc).__name__}); starting degraded")


def _version() -> str:
    from mahavishnu import __version__

    return __version__


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Print the effective settings (secrets masked) and the files they came from."""
    import yaml

    settings = _load()
    data = settings.redacted()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    files = ", ".join(str(f) for f in settings.config_files()) or "none (defaults and environment only)"
    typer.echo(f"# settings files: {files}")
    typer.echo(yaml.safe_dump(data, sort_keys=True).rstrip())


@token_app.command("create")
def token_create(
    sub: Annotated[str, typer.Option(help="Subject: who the token is for.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "viewer",
    tags: Annotated[str, typer.Option(help="Comma-separated repo tags the token may see (empty: all).")] = "",
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 3600, 30m, 1h, 7d.")] = "1h",
) -> None:
    """Issue an HS256 bearer token signed with MAHAVISHNU_AUTH_SECRET (printed on stdout only)."""
    match = _TTL.match(ttl.strip())
    if match is None:
        err.print(f"[red]error:[/red] ttl {ttl!r} is not like 3600, 30m, 1h or 7d")
        raise typer.Exit(2)
    if role not in ROLES:
        err.print(f"[red]error:[/red] role must be one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    settings = _load()
    try:
        settings.ensure_secure()
        role_value: Role = role  # narrowed by the ROLES check above
        token = issue_token(
            settings,
            subject=sub,
            role=role_value,
            tags=[t.strip() for t in tags.split(",") if t.strip()],
            ttl_seconds=seconds,
        )
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    typer.echo(token)


@app.command()
def readiness(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for CI).")] = False,
    min_score: Annotated[float, typer.Option(help="Exit 1 below this score.")] = 70.0,
    url: Annotated[str | None, typer.Option(help="The running server (default: from settings).")] = None,
    alert_rules: Annotated[Path, typer.Option(help="Prometheus alert rules to check.")] = Path(
        "deploy/prometheus/alerts.yml"
    ),
) -> None:
    """Check that this deployment is ready for production; exit non-zero below --min-score."""
    import asyncio

    from rich.table import Table

    from mahavishnu.ops.readiness import run_readiness

    report = asyncio.run(run_readiness(_load(), url=url, alert_rules=alert_rules))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        colours = {"pass": "green", "warn": "yellow", "fail": "red"}
        table = Table("check", "result", "reason", "how to fix")
        for c in report.checks:
            table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", c.reason, c.fix)
        out = Console(highlight=False)
        out.print(table)
        out.print(
            f"score {report.score}/100 (minimum {min_score}): {report.passed} passed, "
            f"{report.warnings} warnings, {report.failed} failed"
        )
    if report.score < min_score:
        raise typer.Exit(1)

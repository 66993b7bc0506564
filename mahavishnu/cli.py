"""The `mahavishnu` command: one typer app, one sub-command group per area.

It is the composition root: `SERVICES` is where each service's settings class and factory
are registered, and `serve [SERVICE]` and `token create --service` work from that table.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import typer
from rich.console import Console

from mahavishnu.akosha.cli import akosha_app
from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.ops.backup.cli import backup_app, use_services
from mahavishnu.ops.service_ops import ServiceOps
from mahavishnu.ops.smoke_cli import smoke_command
from mahavishnu.orchestrator.repos_cli import app as repos_app
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.cli import db_app, dlq_app, run_command, workflows_app
from mahavishnu.platform.auth import ROLES, Role, issue_token
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.settings import PlatformSettings
from mahavishnu.session_buddy.cli import memories_app
from mahavishnu.session_buddy.settings import SessionBuddySettings

if TYPE_CHECKING:
    from mahavishnu.platform.app import Service
    from mahavishnu.platform.observability import Metrics

S = TypeVar("S", bound=PlatformSettings)

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


def _memories_settings() -> None:
    """`--config` names Session-Buddy's settings file for the memories commands."""
    _use_config_flag(SessionBuddySettings)


app.add_typer(memories_app, name="memories", callback=_memories_settings)


def _akosha_settings() -> None:
    """`--config` names Akosha's settings file for the akosha commands."""
    _use_config_flag(AkoshaSettings)


app.add_typer(akosha_app, name="akosha", callback=_akosha_settings)

err = Console(stderr=True, soft_wrap=True, highlight=False)
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


_config_flag: dict[str, Path] = {}
"""The file `--config` named, if any: applied to each service a command resolves (`_entry`)."""


def _print_version(asked: bool) -> None:
    """Answers `--version` while the options are read, before a command is required."""
    if asked:
        typer.echo(f"mahavishnu {_version()}")
        raise typer.Exit(0)


@app.callback()
def _main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The settings file of the service the command addresses (instead of "
            "MAHAVISHNU_CONFIG / <PREFIX>CONFIG, or ~/.config/mahavishnu/<service>.yaml).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the installed version and exit."
        ),
    ] = False,
) -> None:
    """Command output goes to stdout; log lines of every command but `serve` go to stderr."""
    from mahavishnu.platform.observability import configure_logging

    configure_logging("WARNING", "console", stream=sys.stderr)
    if config is not None:
        if not config.is_file():
            err.print(f"[red]error:[/red] no settings file at {config.absolute()} (--config)")
            raise typer.Exit(2)
        _config_flag["file"] = config.absolute()
        _use_config_flag(MahavishnuSettings)  # the workflow, repos and db commands are Mahavishnu's


def _use_config_flag(settings_cls: type[PlatformSettings]) -> None:
    """`--config` as the service's own variable, so every layer that loads its settings reads it."""
    if "file" in _config_flag:
        os.environ[f"{settings_cls.env_prefix}CONFIG"] = str(_config_flag["file"])


@dataclass(frozen=True, slots=True)
class ServiceEntry(Generic[S]):
    """A service as the CLI knows it: its settings class, and its factory imported on first use
    (a factory pulls in the MCP SDK, SQLAlchemy and the service's domain: `--help` need not)."""

    settings: type[S]
    factory: Callable[[], Callable[[S, Metrics], Service]]
    ops: Callable[[], Callable[[S], ServiceOps]] | None = None
    """What `backup` and `readiness` need beyond the platform's settings (files of its own to
    back up, checks of its own), imported on first use too; None: nothing beyond them."""


def _mahavishnu_factory() -> Callable[[MahavishnuSettings, Metrics], Service]:
    from mahavishnu.wiring import create_mahavishnu

    return create_mahavishnu


def _mahavishnu_ops() -> Callable[[MahavishnuSettings], ServiceOps]:
    from mahavishnu.wiring import mahavishnu_ops

    return mahavishnu_ops


def _session_buddy_factory() -> Callable[[SessionBuddySettings, Metrics], Service]:
    from mahavishnu.session_buddy.service import create_service

    return create_service


def _session_buddy_ops() -> Callable[[SessionBuddySettings], ServiceOps]:
    from mahavishnu.wiring import session_buddy_ops

    return session_buddy_ops


def _akosha_factory() -> Callable[[AkoshaSettings, Metrics], Service]:
    from mahavishnu.akosha.service import create_service

    return create_service


def _akosha_ops() -> Callable[[AkoshaSettings], ServiceOps]:
    from mahavishnu.wiring import akosha_ops

    return akosha_ops


SERVICES: dict[str, ServiceEntry[Any]] = {
    "mahavishnu": ServiceEntry(MahavishnuSettings, _mahavishnu_factory, _mahavishnu_ops),
    "session-buddy": ServiceEntry(SessionBuddySettings, _session_buddy_factory, _session_buddy_ops),
    "akosha": ServiceEntry(AkoshaSettings, _akosha_factory, _akosha_ops),
}
"""Every service `serve` and `token create` know, by name. A new one is one entry here."""


def _entry(name: str) -> ServiceEntry[Any]:
    entry = SERVICES.get(name)
    if entry is None:
        err.print(f"[red]error:[/red] no service named {name!r}; choose one of: {', '.join(SERVICES)}")
        raise typer.Exit(2)
    _use_config_flag(entry.settings)
    return entry


def _load(settings_cls: type[S]) -> S:
    try:
        settings = settings_cls.load()
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    return settings


def _service_ops(name: str) -> ServiceOps:
    """`--service NAME` for the ops commands: the service's settings and its part in ops."""
    entry = _entry(name)
    settings = _load(entry.settings)
    return entry.ops()(settings) if entry.ops is not None else ServiceOps(settings)


use_services(_service_ops)


@app.command()
def up(
    services: Annotated[
        str, typer.Option(help=f"Comma-separated services to start (default: all of {', '.join(SERVICES)}).")
    ] = ",".join(SERVICES),
) -> None:
    """Start every service of the ecosystem, each on its own port (as `mahavishnu serve NAME`),
    until Ctrl-C; if one cannot start or stops, the others are stopped too."""
    from mahavishnu.ecosystem import Child, supervise

    names = [name.strip() for name in services.split(",") if name.strip()]
    if not names:
        err.print("[red]error:[/red] --services names no service")
        raise typer.Exit(2)
    loaded = {name: _load(_entry(name).settings) for name in names}
    children = [
        Child(name, f"{settings.resource_url}/mcp", _wired_env(settings, loaded))
        for name, settings in loaded.items()
    ]
    grace = max(settings.shutdown_grace_seconds for settings in loaded.values())
    raise typer.Exit(supervise(children, grace_seconds=grace + 5, say=lambda line: err.print(f"up: {line}")))


def _wired_env(settings: PlatformSettings, started: dict[str, PlatformSettings]) -> dict[str, str]:
    """What `up` tells a service about the others it starts, unless its own settings name
    another: Session-Buddy pushes memories, and Mahavishnu workflow outcomes, to the Akosha
    started beside it; Mahavishnu writes agent runs to the Session-Buddy started beside it (with
    a token Session-Buddy's secret signs, when it has one: subject and tenant `mahavishnu`)."""
    env: dict[str, str] = {}
    akosha, session_buddy = started.get("akosha"), started.get("session-buddy")
    if akosha is not None and isinstance(settings, SessionBuddySettings) and settings.akosha_url is None:
        env["SESSION_BUDDY_AKOSHA_URL"] = akosha.resource_url
    if isinstance(settings, MahavishnuSettings):
        if akosha is not None and settings.akosha_url is None:
            env["MAHAVISHNU_AKOSHA_URL"] = akosha.resource_url
        if session_buddy is not None and settings.session_buddy_url is None:
            env["MAHAVISHNU_SESSION_BUDDY_URL"] = session_buddy.resource_url
            if session_buddy.auth_secret is not None and settings.session_buddy_token is None:
                env["MAHAVISHNU_SESSION_BUDDY_TOKEN"] = issue_token(
                    session_buddy,
                    subject="mahavishnu",
                    role="operator",
                    ttl_seconds=session_buddy.auth_max_ttl_seconds,
                )
    return env


@app.command()
def serve(
    service: Annotated[
        str, typer.Argument(help=f"The service to run, one of: {', '.join(SERVICES)}.")
    ] = "mahavishnu",
    host: Annotated[str | None, typer.Option(help="Address to listen on (setting: host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (setting: port).")] = None,
    repos: Annotated[
        Path | None, typer.Option(help="Repository manifest (setting: repos_file; mahavishnu only).")
    ] = None,
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve one client over stdin/stdout.")] = False,
) -> None:
    """Start an MCP server (Streamable HTTP on /mcp, or stdio): Mahavishnu unless SERVICE names another."""
    from mahavishnu.platform.server import StartupError, run_service

    entry = _entry(service)
    try:
        run_service(
            entry.settings,
            lambda settings, metrics: entry.factory()(settings, metrics),  # imported once the port is bound
            version=_version(),
            overrides={"host": host, "port": port, "repos_file": repos},
            stdio=stdio,
        )
    except StartupError as exc:  # the settings are fine; the port, the database... are not
        err.print(f"[red]cannot start:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except ConfigurationError as exc:
        err.print(f"[red]refusing to start:[/red] {exc.message}")
        raise typer.Exit(2) from None


def _version() -> str:
    from mahavishnu import __version__

    return __version__


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
    service: Annotated[
        str, typer.Option(help=f"The service whose settings to show, one of: {', '.join(SERVICES)}.")
    ] = "mahavishnu",
) -> None:
    """Print the effective settings (secrets masked), the settings file and the data folder."""
    import yaml

    settings = _load(_entry(service).settings)
    data = settings.redacted()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    settings_file = settings.settings_file()
    found = "" if settings_file.is_file() else " (not found: defaults and environment only)"
    typer.echo(f"# settings file: {settings_file}{found}")
    for extra in (f for f in settings.config_files() if f != settings_file):
        typer.echo(f"# environment file: {extra}")
    typer.echo(f"# data folder: {settings.data_dir.absolute()}")
    typer.echo(yaml.safe_dump(data, sort_keys=True).rstrip())


@token_app.command("create")
def token_create(
    sub: Annotated[str, typer.Option(help="Subject: who the token is for.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "viewer",
    tags: Annotated[str, typer.Option(help="Comma-separated repo tags the token may see (empty: all).")] = "",
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 3600, 30m, 1h, 7d.")] = "1h",
    service: Annotated[
        str, typer.Option(help=f"The service the token is for (its audience), one of: {', '.join(SERVICES)}.")
    ] = "mahavishnu",
    tenant: Annotated[
        str | None,
        typer.Option(help="The tenant whose data the token works on (default: its subject's)."),
    ] = None,
) -> None:
    """Issue an HS256 bearer token for one service, signed with its AUTH_SECRET (MAHAVISHNU_AUTH_SECRET
    for mahavishnu) and carrying its audience (printed on stdout only)."""
    match = _TTL.match(ttl.strip())
    if match is None:
        err.print(f"[red]error:[/red] ttl {ttl!r} is not like 3600, 30m, 1h or 7d")
        raise typer.Exit(2)
    if role not in ROLES:
        err.print(f"[red]error:[/red] role must be one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    settings = _load(_entry(service).settings)
    try:
        settings.ensure_secure()
        role_value: Role = role  # narrowed by the ROLES check above
        token = issue_token(
            settings,
            subject=sub,
            role=role_value,
            tags=[t.strip() for t in tags.split(",") if t.strip()],
            ttl_seconds=seconds,
            tenant=tenant,
        )
    except ConfigurationError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    typer.echo(token)


@app.command()
def worker(
    host: Annotated[
        str | None, typer.Option(help="Run the runs of the manifest's repositories on this host.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="The address the metrics port listens on.")] = "127.0.0.1",
) -> None:
    """Execute workflow runs for the Temporal engine on this build host (no database needed)."""
    import asyncio

    from mahavishnu.orchestrator.manifest_model import name_problem
    from mahavishnu.orchestrator.service import engine_config, temporal_config
    from mahavishnu.orchestrator.workflows.temporal.host_worker import serve_host
    from mahavishnu.platform.observability import configure_logging

    settings = _load(MahavishnuSettings)
    if host is not None and (problem := name_problem(host, "host")):
        err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format, stream=sys.stderr, service="mahavishnu-worker")
    try:
        metrics = (metrics_host, metrics_port) if metrics_port is not None else None
        config = temporal_config(settings)
        asyncio.run(serve_host(settings, config, engine_config(settings), host, metrics_address=metrics))
    except ConnectionError as exc:
        err.print(f"[red]error:[/red] {exc}; start Temporal or set temporal_address")
        raise typer.Exit(1) from None


@app.command()
def readiness(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for CI).")] = False,
    min_score: Annotated[float, typer.Option(help="Exit 1 below this score.")] = 70.0,
    url: Annotated[str | None, typer.Option(help="The running server (default: from settings).")] = None,
    alert_rules: Annotated[Path, typer.Option(help="Prometheus alert rules to check.")] = Path(
        "deploy/prometheus/alerts.yml"
    ),
    service: Annotated[
        str, typer.Option(help=f"The service to check, one of: {', '.join(SERVICES)}.")
    ] = "mahavishnu",
) -> None:
    """Check that this deployment of a service is ready for production; exit non-zero below --min-score."""
    import asyncio

    from rich.table import Table

    from mahavishnu.ops.readiness import run_readiness

    ops = _service_ops(service)
    report = asyncio.run(
        run_readiness(ops.settings, url=url, alert_rules=alert_rules, extra_checks=ops.readiness_checks)
    )
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

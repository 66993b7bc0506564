"""`mahavishnu akosha …`: Akosha's store from the command line, without a server.

`plot` opens Akosha's own database with its own settings (AKOSHA_*, AKOSHA_ENCRYPTION_KEY,
POSTGRES_URL), runs the analysis the MCP tools run, and writes its chart as PNG or SVG. It
reads as the local administrator (whoever can run it can read the key and the database
already); `--source` narrows it to some sources, as a token scoped to them would be.

Exit codes: 0 success; 1 the database is unavailable; 2 bad input, unusable settings, or no
database where the settings point.
numpy, SQLAlchemy and matplotlib load inside the command, so `mahavishnu --help` stays quick.
"""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.platform.cli_support import fail, out, print_json, run_sync
from mahavishnu.platform.errors import ConfigurationError

if TYPE_CHECKING:
    from mahavishnu.akosha.analyst import Query
    from mahavishnu.akosha.analytics_views import AnomalyReport, ChangeReport, TrendReport
    from mahavishnu.platform import Principal

__all__ = ["akosha_app"]

akosha_app = typer.Typer(help="Akosha's store: charts of what the systems report.", no_args_is_help=True)


class Kind(StrEnum):
    trend = "trend"
    anomalies = "anomalies"
    changepoints = "changepoints"


def _principal(sources: list[str] | None) -> Principal:
    from mahavishnu.platform.auth import LOCAL_PRINCIPAL, Principal

    if not sources:
        return LOCAL_PRINCIPAL
    return Principal(subject="cli", role="viewer", tags=frozenset(sources))


async def _report(
    settings: AkoshaSettings, kind: Kind, principal: Principal, query: Query
) -> TrendReport | AnomalyReport | ChangeReport:
    from mahavishnu.akosha.analyst import Analyst
    from mahavishnu.akosha.keys import key_ring
    from mahavishnu.akosha.series import MEMORY_METRICS, MetricRegistry, Store
    from mahavishnu.akosha.workflow_series import WORKFLOW_METRICS
    from mahavishnu.platform.db import Database

    db = Database.from_settings(settings, create=False)  # never made here: a reader needs one
    try:
        await db.ensure_schema(upgrade=False)
        registry = MetricRegistry((*MEMORY_METRICS, *WORKFLOW_METRICS))
        analyst = Analyst(Store(db, key_ring(settings)), registry)
        if kind is Kind.trend:
            return await analyst.trends(principal, query)
        if kind is Kind.anomalies:
            return await analyst.anomalies(principal, query)
        return await analyst.changepoints(principal, query)
    finally:
        await db.dispose()


@akosha_app.command()
def plot(
    metric: Annotated[str, typer.Argument(help="memories or sessions.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the chart: a .png or .svg file.")],
    kind: Annotated[Kind, typer.Option(help="What to draw over the series.")] = Kind.trend,
    by: Annotated[str, typer.Option(help="One series per: none, source or project.")] = "none",
    window: Annotated[str, typer.Option(help="How far back, e.g. 48h, 30d, 12w (at most 366d).")] = "30d",
    bucket: Annotated[str, typer.Option(help="Bucket size: hour, day, week or e.g. 15m, 6h.")] = "day",
    until: Annotated[datetime | None, typer.Option(help="Where the window ends, UTC (default now).")] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Only this source (repeatable), as a token scoped to it.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the report as JSON.")] = False,
) -> None:
    """Chart a metric of the memories Akosha holds: the series per bucket with its Theil-Sen
    trend line, its anomalies (red) or its change points (vertical lines), as the MCP tools
    analyze_trends, detect_anomalies and detect_changepoints compute them."""
    from datetime import UTC

    from mahavishnu.akosha.analyst import Query
    from mahavishnu.akosha.charts import FORMATS, render

    fmt = out_file.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        fail(f"--out: {out_file} must end in .png or .svg", 2)
    settings = _settings()
    when = until.replace(tzinfo=UTC) if until is not None and until.tzinfo is None else until
    report = run_sync(_report(settings, kind, _principal(source), Query(metric, by, window, bucket, when)))
    chart = render(report, "svg" if fmt == "svg" else "png")
    try:
        _write(out_file, chart)
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}", 2)
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    out.print(
        f"wrote the {kind.value} chart of {escape(metric)} by {escape(by)} ({len(report.series)} series, "
        f"{report.buckets} buckets of {report.bucket}) to {escape(str(out_file))}"
    )


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a temporary file beside it, renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as sink:
        sink.write(data)
    os.replace(partial, path)


def _settings() -> AkoshaSettings:
    try:
        return AkoshaSettings.load()
    except ConfigurationError as exc:
        fail(exc.message, 2)

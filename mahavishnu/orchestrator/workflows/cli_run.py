"""`mahavishnu run`: a workflow across repositories, executed here by a LocalEngine of its own,
with progress until every repo run is final. Ctrl-C (or SIGTERM) cancels the workflow and waits
for its runs to be recorded as cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.cli_common import counts_text, load_settings, open_service, until_final
from mahavishnu.orchestrator.workflows.cli_output import print_view
from mahavishnu.platform.auth import LOCAL_PRINCIPAL
from mahavishnu.platform.cli_support import err, fail, run_sync
from mahavishnu.platform.errors import ConfigurationError

if TYPE_CHECKING:
    from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
    from mahavishnu.orchestrator.workflows.views import WorkflowView

__all__ = ["run_command"]

PLAIN_PROGRESS_SECONDS = 1.0
"""Without a terminal, progress is a line at most this often (logs and CI stay readable)."""
CANCEL_WAIT_EXTRA_SECONDS = 10.0
"""After a cancel, how long past the kill grace to wait for the runs to be recorded as final."""
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


# --- run ----------------------------------------------------------------------------------


def _parse_params(pairs: list[str], definition: WorkflowDefinition | None) -> dict[str, Any]:
    """NAME=VALUE pairs, typed by the workflow's declared parameters.

    Values the type cannot take are passed on as given, so the service reports them with
    the same message an MCP client gets.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"--param {pair!r} is not NAME=VALUE", 2)
        name = name.strip()
        spec = definition.params.get(name) if definition else None
        typed: Any = value
        if spec is not None and spec.type == "integer":
            with contextlib.suppress(ValueError):
                typed = int(value)
        elif spec is not None and spec.type == "boolean" and value.lower() in _TRUE | _FALSE:
            typed = value.lower() in _TRUE
        params[name] = typed
    return params


class _Progress:
    """A progress bar on a terminal; otherwise a line now and then (and none at all for --json)."""

    def __init__(self, view: WorkflowView, *, quiet: bool) -> None:
        self._total = sum(view.counts.values())
        self._live = err.is_terminal
        self._quiet = quiet and not self._live
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self._task = self._bar.add_task(escape(view.workflow), total=self._total, counts="")
        self._shown = -1
        self._shown_at = 0.0

    def __enter__(self) -> _Progress:
        if self._live:
            self._bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._live:
            self._bar.stop()

    def update(self, view: WorkflowView) -> None:
        done = view.done
        if self._live:
            self._bar.update(self._task, completed=done, counts=counts_text(view.counts))
            return
        now = time.monotonic()
        final = view.finished_at is not None
        if (
            self._quiet
            or done == self._shown
            or (now - self._shown_at < PLAIN_PROGRESS_SECONDS and not final)
        ):
            return
        self._shown, self._shown_at = done, now
        err.print(f"{done}/{self._total} final: {counts_text(view.counts)}")


class _Signals:
    """SIGINT/SIGTERM become a request to cancel the workflow, not an abrupt exit."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.received: int | None = None

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on, sig)
        return self

    def __exit__(self, *_: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    def _on(self, sig: int) -> None:
        if self.received is None:
            self.received = sig
        self.event.set()


@dataclass(frozen=True, slots=True)
class _Outcome:
    view: WorkflowView
    short_id: str
    signal: int | None


async def _run_workflow(
    settings: MahavishnuSettings,
    workflow: str,
    *,
    tag: str | None,
    role: str | None,
    repos: list[str] | None,
    params: dict[str, Any],
    quiet: bool,
    idempotency_key: str | None = None,
) -> _Outcome:
    from mahavishnu.orchestrator.manifest import INIT_HINT, ManifestError

    async with open_service(settings, engine=True) as ctx:
        assert ctx.engine is not None
        ctx.manifest.reload_if_changed()
        if ctx.manifest.problems:
            raise ManifestError(ctx.manifest.problems)
        if not ctx.manifest.exists:
            raise ConfigurationError(f"no repository manifest at {ctx.manifest.path}; {INIT_HINT}")
        summary = await ctx.service.trigger(
            LOCAL_PRINCIPAL,
            workflow,
            tag=tag,
            role=role,
            repos=repos,
            params=params,
            idempotency_key=idempotency_key,
        )
        wid = summary.workflow_id
        short_id = (await ctx.service.short_workflow_ids(LOCAL_PRINCIPAL, [wid])).get(wid, wid)
        queued = await ctx.service.status(LOCAL_PRINCIPAL, wid, limit=0)
        runs = sum(queued.counts.values())
        if queued.status == "queued":
            err.print(f"workflow {short_id} ({escape(workflow)}): {runs} repo runs queued")
        else:  # triggered before with this idempotency key (or already taken by a server's engine)
            err.print(f"workflow {short_id} ({escape(workflow)}): {queued.status}, {runs} repo runs")
        async with ctx.engine.running(workflows={wid}):
            with _Signals() as signals, _Progress(queued, quiet=quiet) as progress:
                view = await until_final(ctx.service, wid, signals.event, progress.update)
                if view.finished_at is None:
                    err.print(f"interrupted: cancelling workflow {short_id}")
                    await ctx.service.cancel(LOCAL_PRINCIPAL, wid)
                    # Keep the engine running until its killed runs are recorded as cancelled.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            until_final(ctx.service, wid, None, progress.update),
                            settings.kill_grace_seconds + CANCEL_WAIT_EXTRA_SECONDS,
                        )
                    view = await ctx.service.status(LOCAL_PRINCIPAL, wid)
        return _Outcome(view, short_id, signals.received)


def run_command(
    workflow: Annotated[str, typer.Argument(help="The workflow to run, as named in the settings.")],
    tag: Annotated[str | None, typer.Option(help="Only repositories with this tag.")] = None,
    role: Annotated[str | None, typer.Option(help="Only repositories with this role.")] = None,
    repo: Annotated[
        list[str] | None, typer.Option("--repo", help="Only this repository (repeat for more).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A workflow parameter as NAME=VALUE (repeatable).")
    ] = None,
    output: Annotated[
        bool, typer.Option("--output", help="Show the last output lines of every run, not only failed ones.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final status as JSON.")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Run again with the same key after an interruption: the workflow it started "
            "is watched (its unfinished runs resumed) instead of a new one; other arguments "
            "with the same key are refused."
        ),
    ] = None,
) -> None:
    """Run a workflow across repositories here, showing progress until every repo run is final.

    The summary shows why each failed run failed (its error and last output lines). Exits 1 when
    any repository did not succeed. Ctrl-C cancels the workflow.
    """
    settings = load_settings()
    params = _parse_params(param or [], settings.workflow_definitions().get(workflow))
    outcome = run_sync(
        _run_workflow(
            settings,
            workflow,
            tag=tag,
            role=role,
            repos=repo,
            params=params,
            quiet=as_json,
            idempotency_key=idempotency_key,
        )
    )
    if as_json:
        typer.echo(outcome.view.model_dump_json(indent=2))
    else:
        print_view(outcome.view, outcome.short_id, output=output)
    if outcome.signal is not None:
        raise typer.Exit(128 + outcome.signal)
    if any(run.status != "succeeded" for run in outcome.view.runs):
        raise typer.Exit(1)

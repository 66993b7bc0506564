"""How the workflow commands print runs and attempts: where a user looks for why a run failed.

A run's row shows the reason it failed (its error and the last meaningful lines of its output),
trimmed to the terminal rather than wrapped; a successful run shows its first line and how many
more there are, so a dirty work tree does not look like a clean one. Status words and IDs are
never cut: their columns do not wrap, and the output column gives way first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mahavishnu.orchestrator.workflows.cli_common import counts_text, styled, when
from mahavishnu.platform.cli_support import first_line, out

if TYPE_CHECKING:
    from mahavishnu.orchestrator.workflows.views import AttemptView, RunView, WorkflowView

__all__ = ["attempt_lines", "meaningful_lines", "print_attempts", "print_view", "runs_table"]

CELL_LINES = 3
"""Output lines in a run's table cell."""
ATTEMPT_LINES = 10
"""Output lines under each attempt of `workflows show` and `dlq show`."""
_UNFINISHED = {"queued", "running"}
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


def meaningful_lines(text: str | None) -> list[str]:
    """The lines a terminal would end up showing, without blank ones: what follows the last
    carriage return of each (progress meters), escape sequences and control characters
    dropped, tabs as spaces, trimmed."""
    lines = []
    for raw in (text or "").split("\n"):
        line = _CONTROL.sub("", raw.rstrip("\r").rpartition("\r")[2].replace("\t", "    ")).strip()
        if line:
            lines.append(line)
    return lines


def _reason(error: str | None, exit_code: int | None) -> str | None:
    """The error, unless it only repeats the exit code the row already shows."""
    line = first_line(error)
    return None if not line or line == f"exited with code {exit_code}" else line


def _output_cell(run: RunView, *, output: bool) -> Text:
    lines = meaningful_lines(run.output_tail)
    if run.status not in _UNFINISHED and run.status != "succeeded":
        shown = [line for line in (first_line(run.error),) if line] + lines[-CELL_LINES:]
    elif output:
        shown = lines[-CELL_LINES:]
    elif len(lines) > 1:
        more = len(lines) - 1
        shown = [f"{lines[0]} (+{more} line{'s' if more > 1 else ''}; --output)"]
    else:
        shown = lines
    return Text("\n".join(shown), no_wrap=True, overflow="ellipsis")


def runs_table(runs: Sequence[RunView], *, output: bool = False) -> Table:
    """One row per run. `output`: the last lines of every run's output, not only failed ones."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("repo", no_wrap=True, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("exit", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("error / output")  # wraps in the layout; its cells cut each line instead
    for run in runs:
        table.add_row(
            escape(run.repo),
            styled(run.status),
            str(run.attempt),
            "-" if run.exit_code is None else str(run.exit_code),
            "-" if run.duration_seconds is None else f"{run.duration_seconds:.2f}s",
            _output_cell(run, output=output),
        )
    return table


def print_view(view: WorkflowView, short_id: str, *, output: bool = False) -> None:
    out.print(runs_table(view.runs, output=output) if view.runs else "no repo runs to show")
    name = escape(view.workflow)
    out.print(f"workflow {short_id} ({name}): {styled(view.status)} · {counts_text(view.counts)}")


def attempt_lines(attempt: AttemptView) -> list[str | Text]:
    """An attempt as `workflows show` and `dlq show` print it: a heading (number, status, exit
    code, duration, start), the reason, the last lines of its output, and its log file."""
    code = "-" if attempt.exit_code is None else str(attempt.exit_code)
    seconds = f"{attempt.duration_seconds:.2f}s"
    lines: list[str | Text] = [
        f"attempt {attempt.attempt}: {styled(attempt.status)} · exit code {code} · {seconds}"
        f" · started {when(attempt.started_at)}"
    ]
    reason = _reason(attempt.error, attempt.exit_code)
    if reason:
        lines.append(Text(f"  error: {reason}"))
    if attempt.output_tail is None:
        lines.append("  [dim](output not on this machine: see the log where the attempt ran)[/dim]")
    else:
        tail = meaningful_lines(attempt.output_tail)[-ATTEMPT_LINES:]
        lines.extend(Text(f"  │ {line}") for line in tail)
        if not tail:
            lines.append("  [dim](no output)[/dim]")
    if attempt.log_file:
        lines.append(Text(f"  log: {attempt.log_file}"))
    return lines


def print_attempts(runs: Sequence[RunView], attempts: Mapping[str, list[AttemptView]]) -> None:
    """Every attempt of each run, under the run's repository."""
    for run in runs:
        found = attempts.get(run.run_id, [])
        if not found:
            continue
        out.print()
        out.print(f"[bold]{escape(run.repo)}[/bold]")
        for attempt in found:
            for line in attempt_lines(attempt):
                out.print(line)

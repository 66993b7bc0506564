"""`mahavishnu run` in a real pseudo-terminal of 80 columns, driven as a person at a keyboard
drives it: the progress bar draws, Ctrl-C (the terminal's interrupt character, not a signal
sent by the test) cancels the workflow and kills its processes, and the summary fits the width.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.support.cli_fixtures import Cli, DatabaseTarget, build_cli, process_gone, wait_for

COLUMNS = 80
COLOURS = re.compile(r"\x1b\[[0-9;]*m|\x1b\][^\x07]*\x07")
CURSOR_MOVES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return build_cli(tmp_path, DatabaseTarget("sqlite", {}), {"alpha": ["python"], "beta": ["python"]})


def spawn(cli: Cli, *args: str) -> pexpect.spawn:
    env = {**cli.env, "COLUMNS": str(COLUMNS), "LINES": "24", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    return pexpect.spawn(
        sys.executable,
        ["-m", "mahavishnu", *args],
        cwd=str(cli.root),
        env=env,
        dimensions=(24, COLUMNS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
    )


def screen_lines(raw: str) -> list[str]:
    """What was printed, as lines: colours dropped, and each redraw (a carriage return or a
    cursor move) starting a line of its own, as the terminal shows it over the last one."""
    text = CURSOR_MOVES.sub("\n", COLOURS.sub("", raw))
    return [line for line in text.splitlines() if line.strip()]


def test_the_progress_bar_draws_and_ctrl_c_cancels_and_kills(cli: Cli) -> None:
    terminal = spawn(cli, "run", "slow", "--tag", "python")
    pid_files = [cli.repos[name] / ".slow.pid" for name in ("alpha", "beta")]
    try:
        terminal.expect(r"repo runs queued")
        terminal.expect(r"0/2")  # rich's M-of-N column: the bar is drawn on the terminal
        wait_for(lambda: all(f.is_file() and f.read_text() for f in pid_files), what="both runs to start")

        terminal.sendintr()  # the terminal's ^C: SIGINT to the foreground process group

        terminal.expect(r"interrupted: cancelling workflow")
        terminal.expect(pexpect.EOF)
    finally:
        terminal.close(force=True)
    assert terminal.exitstatus == 130, terminal.before
    for pid_file in pid_files:
        assert process_gone(int(pid_file.read_text()))

    output = terminal.before or ""
    lines = screen_lines(output)
    summary = [line for line in lines if "alpha" in line or "beta" in line or "cancelled" in line]
    assert summary, output
    assert any("cancelled" in line for line in summary)
    too_wide = [line for line in lines if len(line) > COLUMNS]
    assert not too_wide, too_wide


def test_a_finished_run_summary_fits_80_columns(cli: Cli) -> None:
    terminal = spawn(cli, "run", "git-status")
    try:
        terminal.expect(pexpect.EOF)
    finally:
        terminal.close(force=True)
    assert terminal.exitstatus == 0, terminal.before
    lines = screen_lines(terminal.before or "")
    assert any("alpha" in line and "succeeded" in line for line in lines), lines
    assert any("beta" in line and "succeeded" in line for line in lines), lines
    too_wide = [line for line in lines if len(line) > COLUMNS]
    assert not too_wide, too_wide

"""What a user sees in an 80-column terminal: why a run failed (in the run table, per attempt in
`workflows show` and `dlq show`), and IDs that can be copied from a table and typed back.

Real CLI in a subprocess, real git repositories: a dirty work tree, and a `git pull` with no
remote to pull from, whose own message must reach the table.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mahavishnu.orchestrator.workflows.cli_output import meaningful_lines
from tests.support.cli_fixtures import WORKFLOWS, Cli, DatabaseTarget, build_cli, table_rows

NARROW = {"COLUMNS": "80"}
GIT_SAYS = "There is no tracking information for the current branch."
"""What `git pull` says first in a repository with no remote (the reason)."""
GIT_ENDS = "If you wish to set tracking information for this branch"
"""One of the last lines it prints (what the run table shows, trimmed to the width)."""
PULL = {  # the built-in git-pull, with two quick attempts instead of three slow ones
    "argv": ["git", "pull", "--ff-only"],
    "retry": {"max_attempts": 2, "initial_backoff_seconds": 0.1, "jitter_seconds": 0},
}


def narrow_cli(root: Path, target: DatabaseTarget) -> Cli:
    cli = build_cli(root, target, {"alpha": ["python"], "beta": ["python"]})
    (root / "settings.yaml").write_text(yaml.safe_dump({"workflows": {**WORKFLOWS, "pull": PULL}}))
    cli.env.update(NARROW)
    return cli


@pytest.fixture
def cli(tmp_path: Path, target: DatabaseTarget) -> Cli:
    return narrow_cli(tmp_path, target)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    """Where the database plays no part in what is checked, one dialect is enough."""
    return narrow_cli(tmp_path, DatabaseTarget("sqlite", {}))


def fits(output: str) -> str:
    """Tables and summary lines fit 80 columns (a detail line, a log path say, may run on)."""
    tabular = [line for line in output.splitlines() if re.search(r"[│┃━]|^workflow ", line)]
    assert tabular
    wide = [line for line in tabular if len(line) > 80]
    assert not wide, "\n".join(wide)
    return output


def cell_lines(output: str, repo: str) -> list[str]:
    """The last cell of a run table row and its continuation lines."""
    lines, inside = [], False
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) < 2:
            inside = False
            continue
        if cells[0]:
            inside = cells[0] == repo
        if inside:
            lines.append(cells[-1])
    return lines


def short_id_of(summary: str) -> str:
    [short] = re.findall(r"^workflow (\S+) \(", summary, re.MULTILINE)
    return str(short)


def test_a_dirty_repository_does_not_look_clean(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    (cli.repos["beta"] / "README.md").write_text("changed\n")

    ran = cli.ok("run", "git-status")

    assert cell_lines(fits(ran.stdout), "alpha") == ["## main"]
    assert cell_lines(ran.stdout, "beta") == ["## main (+1 line; --output)"]
    shown = cli.ok("workflows", "show", short_id_of(ran.stdout), "--output", "--repo", "beta").stdout
    assert cell_lines(fits(shown), "beta") == ["## main", "M README.md"]
    assert [key for key in table_rows(shown) if key] == ["beta"]  # --repo: that run alone
    assert "2 succeeded" in shown  # the counts stay the whole workflow's


def test_a_failed_git_pull_shows_gits_message(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    ran = cli("run", "pull", "--repo", "alpha")

    assert ran.returncode == 1, ran.stderr
    cell = cell_lines(fits(ran.stdout), "alpha")
    assert cell[0] == "exited with code 1"
    assert len(cell) == 4  # the error and the last three lines of git's message
    assert any(line.startswith(GIT_ENDS[:30]) for line in cell), cell
    assert table_rows(ran.stdout)["alpha"][:3] == ["failed", "2", "1"]

    shown = fits(cli.ok("workflows", "show", short_id_of(ran.stdout)).stdout)
    attempts = re.findall(r"^attempt (\d): failed · exit code 1 · [\d.]+s · started ", shown, re.MULTILINE)
    assert attempts == ["1", "2"]
    assert shown.count(f"│ {GIT_SAYS}") == 2  # each attempt's own output: the first from its log
    logs = re.findall(r"^  log: (.+)$", shown, re.MULTILINE)
    assert [Path(log).name.rsplit(".", 2)[1] for log in logs] == ["1", "2"]
    assert all(GIT_SAYS in Path(log).read_text() for log in logs)


def test_dlq_show_gives_every_attempt(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    assert cli("run", "pull", "--repo", "alpha").returncode == 1
    listed = fits(cli.ok("dlq", "list").stdout)
    [short] = [key for key in table_rows(listed) if key]
    assert table_rows(listed)[short][:4] == ["pull", "alpha", "open", "2"]

    shown = fits(cli.ok("dlq", "show", short).stdout)

    assert re.findall(r"^attempt (\d): failed · exit code 1 ", shown, re.MULTILINE) == ["1", "2"]
    assert shown.count(f"│ {GIT_SAYS}") == 2
    entry = cli.json("dlq", "show", short)
    assert entry["dead_letter_id"].startswith(short)
    history = entry["attempt_history"]
    assert [(a["attempt"], a["exit_code"]) for a in history] == [(1, 1), (2, 1)]
    assert all(GIT_SAYS in a["output_tail"] for a in history)
    assert all(Path(a["log_file"]).is_file() for a in history)


@pytest.mark.timeout(300)  # a dozen CLI starts: slow on a loaded machine
def test_ids_are_short_whole_and_taken_back_by_any_unique_prefix(cli: Cli) -> None:
    cli.env["MAHAVISHNU_CIRCUIT_FAILURE_THRESHOLD"] = "1"  # alpha's first failure opens its circuit
    assert cli("run", "fail", "--repo", "alpha").returncode == 1
    skipped = cli("run", "fail", "--repo", "alpha")
    assert skipped.returncode == 1
    assert table_rows(fits(skipped.stdout))["alpha"][0] == "skipped_circuit_open"

    listed = fits(cli.ok("workflows", "list").stdout)
    full = [w["workflow_id"] for w in cli.json("workflows", "list")]
    shorts = [key for key in table_rows(listed) if key]
    assert len(shorts) == 2
    for short, whole in zip(shorts, full, strict=True):
        assert whole.startswith(short)
        assert len(short) >= 8
        assert "…" not in short
    newest = fits(cli.ok("workflows", "show", shorts[0]).stdout)
    assert f"id:           {full[0]}" in newest
    assert table_rows(newest)["alpha"][0] == "skipped_circuit_open"
    assert cli.json("workflows", "show", shorts[1])["workflow_id"] == full[1]

    common = full[0][: next(i for i, (a, b) in enumerate(zip(*full, strict=False)) if a != b)]
    assert len(common) >= 4  # UUIDv7: the same first hex digits for ~49 days
    ambiguous = cli("workflows", "show", common[:4])
    assert ambiguous.returncode == 2
    [error] = [line for line in ambiguous.stderr.splitlines() if line.startswith("error:")]
    assert "ambiguous" in error
    assert all(short in error for short in shorts), error

    [dead] = cli.json("dlq", "list")
    [dead_short] = [key for key in table_rows(fits(cli.ok("dlq", "list").stdout)) if key]
    assert dead["dead_letter_id"].startswith(dead_short)
    retried = cli("dlq", "retry", dead_short)
    assert retried.returncode == 0, retried.stderr
    assert cli.json("dlq", "show", dead_short)["status"] == "retrying"


def test_typing_a_prefix_that_matches_nothing_says_so(sqlite_cli: Cli) -> None:
    sqlite_cli.ok("db", "upgrade")  # a database that has no such entry (without one: "no database")
    for command, what in (("workflows", "workflow"), ("dlq", "dead letter")):
        result = sqlite_cli(command, "show", "0123abcd")
        assert result.returncode == 2
        assert f"error: no {what} '0123abcd'" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_long_output_line_is_cut_at_the_edge_not_folded(sqlite_cli: Cli) -> None:
    word = "x" * 100
    ran = sqlite_cli(
        "run", "echo", "--repo", "alpha", "--param", f"word={word}", "--param", "count=1", "--output"
    )

    assert ran.returncode == 0, ran.stderr
    [line] = cell_lines(fits(ran.stdout), "alpha")
    assert line.startswith("['xxxx")
    assert line.endswith("…")


def test_meaningful_lines_are_what_a_terminal_ends_up_showing() -> None:
    text = (
        "crlf line\r\n\n   \nReceiving 10%\rReceiving 100%, done.\n"
        "\x1b[31mred\x1b[0m\tword\x07\n  indented  \n"
    )
    assert meaningful_lines(text) == ["crlf line", "Receiving 100%, done.", "red    word", "indented"]
    assert meaningful_lines(None) == []

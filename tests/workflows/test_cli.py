"""`mahavishnu run | workflows | dlq | db`, run as a user runs them: `python -m mahavishnu` in a
subprocess, over real git repositories, on SQLite and on the PostgreSQL server.

The command runs its own engine in-process, so no server is involved anywhere here.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli_fixtures import (
    Cli,
    DatabaseTarget,
    build_cli,
    interrupt,
    process_gone,
    table_rows,
    wait_for,
)
from tests.support.server import start_server

FLEET = {"alpha": ["python"], "beta": ["python"], "gamma": ["rust"]}


@pytest.fixture
def cli(tmp_path: Path, target: DatabaseTarget) -> Cli:
    return build_cli(tmp_path, target, FLEET)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    """For input errors: the database plays no part, one dialect is enough."""
    return build_cli(tmp_path, DatabaseTarget("sqlite", {}), FLEET)


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


# --- run ------------------------------------------------------------------------------------


def test_run_succeeds_everywhere_and_prints_the_summary(cli: Cli) -> None:
    result = cli("run", "git-status", "--tag", "python")

    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {"alpha", "beta"}
    for status, attempt, exit_code, duration, first_line in rows.values():
        assert (status, attempt, exit_code, first_line) == ("succeeded", "1", "0", "## main")
        assert duration.endswith("s")
    assert "(git-status): succeeded · 2 succeeded" in result.stdout
    assert "2 repo runs queued" in result.stderr
    assert "2/2 final: 2 succeeded" in result.stderr  # no terminal: plain progress lines


def test_run_exits_1_when_a_repo_fails_and_shows_which(cli: Cli) -> None:
    (cli.repos["alpha"] / "ok").touch()
    (cli.repos["gamma"] / "ok").touch()

    result = cli("run", "check")

    assert result.returncode == 1
    rows = table_rows(result.stdout)
    assert rows["alpha"][:3] == ["succeeded", "1", "0"]
    assert rows["alpha"][4] == "checked alpha"
    assert rows["beta"][:3] == ["failed", "1", "3"]
    assert rows["beta"][4] == "exited with code 3"
    assert "(check): partial · 1 failed, 2 succeeded" in result.stdout


def test_run_selects_repositories_by_name_and_tag(cli: Cli) -> None:
    assert set(table_rows(cli.ok("run", "git-status", "--repo", "alpha", "--repo", "gamma").stdout)) == {
        "alpha",
        "gamma",
    }
    assert set(table_rows(cli.ok("run", "git-status", "--tag", "rust").stdout)) == {"gamma"}


def test_run_json_and_typed_params(cli: Cli) -> None:
    view = cli.json("run", "echo", "--repo", "alpha", "--param", "word=hi", "--param", "count=3",
                    "--param", "loud=yes")  # fmt: skip

    assert view["status"] == "succeeded"
    assert view["params"] == {"word": "hi", "count": "3", "loud": "true"}
    assert [r["output_tail"] for r in view["runs"]] == ["['hi', '3', 'true']\n"]


def test_run_again_with_its_idempotency_key_gives_the_same_workflow(cli: Cli) -> None:
    key = ["--idempotency-key", "release-7"]
    first = cli.json("run", "git-status", "--repo", "alpha", *key)
    again = cli("run", "git-status", "--repo", "alpha", "--json", *key)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["workflow_id"] == first["workflow_id"]
    assert "succeeded, 1 repo runs" in again.stderr

    other = cli("run", "git-status", "--repo", "beta", *key)
    assert other.returncode == 2
    assert one_line_error(other.stderr).startswith(
        "error: idempotency_key 'release-7' was used for a different"
    )
    bad = cli("run", "git-status", "--idempotency-key", "no spaces")
    assert bad.returncode == 2
    assert one_line_error(bad.stderr).startswith("error: idempotency_key: must be 1 to 128 characters")


ECHO = ["echo", "--param", "word=hi"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no workflow named 'nope'; known workflows: agent, check, echo, fail,"),
        (["echo", "--param", "word"], "--param 'word' is not NAME=VALUE"),
        ([*ECHO, "--param", "count=many"], "parameter 'count' must be an integer"),
        ([*ECHO, "--param", "count=1", "--param", "loud=maybe"], "parameter 'loud' must be true or false"),
        ([*ECHO, "--param", "count=1", "--param", "colour=red"], "unknown parameter(s): colour"),
        (["echo", "--param", "word=x; rm -rf /", "--param", "count=1"], "parameter 'word' does not match"),
        (["echo", "--param", "count=1"], "parameter 'word' is required"),
        (["git-status", "--tag", "no-such-tag"], "no repositories match the given tag, role and names"),
        (["git-status", "--repo", "zeta"], "no repository named 'zeta'"),
    ],
)
def test_run_refuses_bad_input_with_one_line_and_exit_2(
    sqlite_cli: Cli, args: list[str], message: str
) -> None:
    result = sqlite_cli("run", *args)

    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line_error(result.stderr).startswith(f"error: {message}")
    assert result.stdout == ""


def test_run_refuses_unusable_settings_and_a_missing_manifest(sqlite_cli: Cli) -> None:
    bad = sqlite_cli("run", "git-status", extra_env={"MAHAVISHNU_MAX_CONCURRENT_RUNS": "0"})
    assert bad.returncode == 2
    assert one_line_error(bad.stderr).startswith("error: invalid settings: max_concurrent_runs")

    missing = sqlite_cli("run", "git-status", extra_env={"MAHAVISHNU_REPOS_FILE": "absent.yaml"})
    assert missing.returncode == 2
    assert "no repository manifest at absent.yaml; create it with `mahavishnu repos init ROOT`" in (
        one_line_error(missing.stderr)
    )


def test_ctrl_c_cancels_the_workflow_and_stops_its_processes(cli: Cli) -> None:
    process = cli.start("run", "slow", "--tag", "python")
    pid_files = [cli.repos[name] / ".slow.pid" for name in ("alpha", "beta")]
    wait_for(lambda: all(f.is_file() and f.read_text() for f in pid_files), what="both runs to start")

    code, stdout, stderr = interrupt(process)

    assert code == 130, stderr
    assert "interrupted: cancelling workflow" in stderr
    rows = table_rows(stdout)
    assert {name: row[0] for name, row in rows.items()} == {"alpha": "cancelled", "beta": "cancelled"}
    assert "(slow): cancelled" in stdout
    for pid_file in pid_files:
        assert process_gone(int(pid_file.read_text()))
    [workflow] = cli.json("workflows", "list")
    assert workflow["status"] == "cancelled"


# --- workflows ------------------------------------------------------------------------------


def test_workflows_list_filters_and_show(cli: Cli) -> None:
    cli.ok("run", "git-status")
    assert cli("run", "fail", "--repo", "alpha").returncode == 1

    listed = cli.json("workflows", "list")
    assert [(w["workflow"], w["status"]) for w in listed] == [("fail", "failed"), ("git-status", "succeeded")]
    assert [w["workflow"] for w in cli.json("workflows", "list", "--status", "failed")] == ["fail"]
    assert [w["workflow"] for w in cli.json("workflows", "list", "--workflow", "git-status")] == [
        "git-status"
    ]
    assert len(cli.json("workflows", "list", "--limit", "1")) == 1
    assert cli.json("workflows", "list", "--since", "2999-01-01T00:00:00Z") == []
    table = table_rows(cli.ok("workflows", "list").stdout)
    short_ids = [short for short in table if short]
    assert len(short_ids) == 2
    assert all(w["workflow_id"].startswith(short) for w, short in zip(listed, short_ids, strict=True))
    assert table[short_ids[0]][1] == "failed"

    failed_id = listed[0]["workflow_id"]
    assert cli.json("workflows", "show", short_ids[0])["workflow_id"] == failed_id
    view = cli.json("workflows", "show", failed_id)
    assert view["workflow_id"] == failed_id
    assert [(r["repo"], r["status"], r["exit_code"]) for r in view["runs"]] == [("alpha", "failed", 3)]
    shown = cli.ok("workflows", "show", failed_id).stdout
    assert "status:       failed" in shown
    assert table_rows(shown)["alpha"][:3] == ["failed", "1", "3"]


def test_workflows_show_and_list_refuse_bad_input(cli: Cli) -> None:
    cli.ok("db", "upgrade")  # a database to ask (without one every answer is "no database at")
    unknown = cli("workflows", "show", "01a00000-0000-7000-8000-000000000000")
    assert unknown.returncode == 2
    assert one_line_error(unknown.stderr) == "error: no workflow '01a00000-0000-7000-8000-000000000000'"
    bad_since = cli("workflows", "list", "--since", "yesterday")
    assert bad_since.returncode == 2
    assert one_line_error(bad_since.stderr).startswith("error: since must be an ISO 8601 date")
    bad_status = cli("workflows", "list", "--status", "sleeping")
    assert bad_status.returncode == 2
    assert one_line_error(bad_status.stderr).startswith("error: status must be one of queued, running")


def test_workflows_cancel_stops_a_run_in_another_process(cli: Cli) -> None:
    process = cli.start("run", "slow", "--repo", "alpha")
    pid_file = cli.repos["alpha"] / ".slow.pid"
    wait_for(lambda: pid_file.is_file() and bool(pid_file.read_text()), what="the run to start")
    [workflow] = cli.json("workflows", "list")

    cancelled = cli.ok("workflows", "cancel", workflow["workflow_id"])

    [short_id] = re.findall(r"^workflow (\S+): ", cancelled.stdout)
    assert workflow["workflow_id"].startswith(short_id)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr  # the run did not succeed: it was cancelled
    assert table_rows(stdout)["alpha"][0] == "cancelled"
    assert process_gone(int(pid_file.read_text()))
    assert cli.json("workflows", "show", workflow["workflow_id"])["status"] == "cancelled"


# --- dead letters ---------------------------------------------------------------------------


def test_dlq_list_show_and_retry_until_resolved(cli: Cli) -> None:
    assert cli("run", "check", "--repo", "beta").returncode == 1
    [entry] = cli.json("dlq", "list")
    assert (entry["workflow"], entry["repo"], entry["status"], entry["attempts"]) == (
        "check",
        "beta",
        "open",
        1,
    )
    assert entry["last_error"] == "exited with code 3"
    dead_letter_id = entry["dead_letter_id"]

    shown = cli.ok("dlq", "show", dead_letter_id).stdout
    assert f"id:         {dead_letter_id}" in shown
    assert "repo:       beta" in shown
    assert f"path:       {cli.repos['beta']}" in shown
    assert "command:    python3 -c 'import os, sys;" in shown
    assert "last error: exited with code 3" in shown
    [short_id] = [key for key in table_rows(cli.ok("dlq", "list").stdout) if key]
    assert dead_letter_id.startswith(short_id)

    still_failing = cli("dlq", "retry", dead_letter_id, "--wait")
    assert still_failing.returncode == 1
    assert "open · exited with code 3" in still_failing.stdout
    entry = cli.json("dlq", "show", dead_letter_id)
    assert (entry["status"], entry["attempts"], entry["retries"]) == ("open", 2, 1)

    (cli.repos["beta"] / "ok").touch()
    fixed = cli("dlq", "retry", dead_letter_id, "--wait")
    assert fixed.returncode == 0, fixed.stderr
    assert f"dead letter {dead_letter_id} (beta): resolved" in fixed.stdout
    assert cli.json("dlq", "list") == []
    [resolved] = cli.json("dlq", "list", "--all")
    assert (resolved["status"], resolved["retries"]) == ("resolved", 2)
    view = cli.json("workflows", "show", entry["workflow_id"])
    assert (view["status"], view["runs"][0]["attempt"]) == ("succeeded", 3)

    again = cli("dlq", "retry", dead_letter_id)
    assert again.returncode == 2
    assert one_line_error(again.stderr) == f"error: dead letter '{dead_letter_id}' is resolved, not open"


def test_dlq_retry_without_wait_queues_it_for_the_next_engine(cli: Cli) -> None:
    (cli.repos["alpha"] / "ok").touch()
    assert cli("run", "check", "--repo", "alpha", "--repo", "beta").returncode == 1
    [entry] = cli.json("dlq", "list")
    (cli.repos["beta"] / "ok").touch()

    queued = cli.ok("dlq", "retry", entry["dead_letter_id"])

    assert queued.stdout.strip() == f"dead letter {entry['dead_letter_id']} (beta): queued for retry"
    assert cli.json("dlq", "show", entry["dead_letter_id"])["status"] == "retrying"
    server = start_server(cli.root, cli.env)  # the server's engine, on the same database, takes it
    try:
        wait_for(
            lambda: cli.json("dlq", "show", entry["dead_letter_id"])["status"] == "resolved",
            what="the server to run the retry",
        )
    finally:
        assert server.stop() == 0, "\n".join(server.log_lines())
    assert cli.json("workflows", "show", entry["workflow_id"])["status"] == "succeeded"


def test_dlq_purge(cli: Cli) -> None:
    assert cli("run", "check").returncode == 1  # three dead letters
    entries = cli.json("dlq", "list")
    assert len(entries) == 3
    (cli.repos["alpha"] / "ok").touch()
    cli.ok("dlq", "retry", next(e["dead_letter_id"] for e in entries if e["repo"] == "alpha"), "--wait")

    assert cli.ok("dlq", "purge").stdout.strip() == "purged 1 dead letter(s)"
    assert len(cli.json("dlq", "list", "--all")) == 2

    refused = cli("dlq", "purge", "--all")  # no terminal to confirm on
    assert refused.returncode == 2
    assert "pass --yes" in one_line_error(refused.stderr)
    assert len(cli.json("dlq", "list")) == 2

    assert cli.ok("dlq", "purge", "--all", "--yes").stdout.strip() == "purged 2 dead letter(s)"
    assert cli.json("dlq", "list", "--all") == []
    assert cli.ok("dlq", "list").stdout.strip() == "no dead letters"


def test_dlq_unknown_entry(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    for args in (("dlq", "show", "missing"), ("dlq", "retry", "missing")):
        result = cli(*args)
        assert result.returncode == 2
        assert one_line_error(result.stderr) == "error: no dead letter 'missing'"


# --- database -------------------------------------------------------------------------------


def test_db_status_and_upgrade(cli: Cli, target: DatabaseTarget) -> None:
    if target.sqlite_file is not None:  # no file yet: status says so, and makes none
        missing = cli("db", "status")
        assert missing.returncode == 2
        assert f"no database at {target.sqlite_file}" in one_line_error(missing.stderr)
        assert not target.sqlite_file.exists()
        target.sqlite_file.parent.mkdir(parents=True)
        sqlite3.connect(target.sqlite_file).close()  # an empty database, as PostgreSQL's schema is
    empty = cli("db", "status")
    assert empty.returncode == 1
    assert "current:  none (empty database)" in empty.stdout
    [head] = re.findall(r"^head: +(\S+)$", empty.stdout, re.MULTILINE)
    assert f"not current: the database schema is at nothing, not {head}; run `mahavishnu db upgrade`" in (
        empty.stdout
    )
    refused = cli("run", "git-status", extra_env={"MAHAVISHNU_DB_AUTO_UPGRADE": "false"})
    assert refused.returncode == 2
    assert "run `mahavishnu db upgrade`" in one_line_error(refused.stderr)

    upgraded = cli.ok("db", "upgrade").stdout
    assert f"upgraded from an empty database to revision {head} (head)" in upgraded
    if target.schema:
        assert f"(schema {target.schema})" in upgraded
    assert f"already at revision {head} (head)" in cli.ok("db", "upgrade").stdout
    current = cli.ok("db", "status").stdout
    assert f"current:  {head}" in current
    assert "up to date" in current
    cli.ok("run", "git-status", extra_env={"MAHAVISHNU_DB_AUTO_UPGRADE": "false"})


def test_db_refuses_a_schema_newer_than_the_code(cli: Cli, target: DatabaseTarget) -> None:
    cli.ok("db", "upgrade")
    target.execute("UPDATE alembic_version SET version_num = '9999'")

    status = cli("db", "status")
    assert status.returncode == 1
    assert "current:  9999" in status.stdout
    assert "is newer than this version of Mahavishnu understands" in status.stdout
    for args in (("db", "upgrade"), ("run", "git-status"), ("workflows", "list")):
        result = cli(*args)
        assert result.returncode == 2, args
        assert "the database schema (9999) is newer" in one_line_error(result.stderr)


def test_an_unreachable_database_is_one_line_and_exit_1(sqlite_cli: Cli) -> None:
    unreachable = {"POSTGRES_URL": "postgresql://postgres@127.0.0.1:9/test"}
    for args in (("db", "status"), ("workflows", "list"), ("run", "git-status")):
        result = sqlite_cli(*args, extra_env=unreachable)
        assert result.returncode == 1, (args, result.stderr)
        assert one_line_error(result.stderr).startswith("error: the database is unavailable"), args


def test_db_downgrade_steps_back_and_upgrade_returns(cli: Cli, target: DatabaseTarget) -> None:
    cli.ok("db", "upgrade")
    head = cli.ok("db", "status").stdout.split("head:")[1].split()[0]

    unconfirmed = cli("db", "downgrade", "--", "-1")  # no terminal here: it must not guess
    assert unconfirmed.returncode == 2
    assert "pass --yes to confirm" in one_line_error(unconfirmed.stderr)
    assert f"current:  {head}" in cli.ok("db", "status").stdout

    unknown = cli("db", "downgrade", "nonexistent", "--yes")
    assert unknown.returncode == 2
    assert "cannot downgrade to 'nonexistent'" in one_line_error(unknown.stderr)

    stepped = cli.ok("db", "downgrade", "--yes", "--", "-1").stdout
    assert f"downgraded from {head} to revision" in stepped
    status = cli("db", "status")
    assert status.returncode == 1
    assert "not current" in status.stdout
    assert f"upgraded from {stepped.split('to revision')[1].split()[0]} to revision {head}" in (
        cli.ok("db", "upgrade").stdout
    )


@pytest.mark.parametrize(
    "command",
    [("workflows", "list"), ("workflows", "show", "01a2"), ("dlq", "list"), ("db", "status")],
)
def test_read_only_commands_never_make_an_empty_database(sqlite_cli: Cli, command: tuple[str, ...]) -> None:
    database = sqlite_cli.root / "var" / "mahavishnu.db"
    result = sqlite_cli(*command)
    assert result.returncode != 0, result.stdout
    assert f"no database at {database}" in one_line_error(result.stderr)
    assert not database.exists()
    assert not database.parent.exists()

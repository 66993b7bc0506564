"""`mahavishnu repos init | validate | list`, run through typer's CliRunner against real folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import yaml
from typer.testing import CliRunner, Result

from mahavishnu.orchestrator.repos_cli import app
from mahavishnu.orchestrator.settings import MahavishnuSettings
from tests.support.gitrepos import make_git_repo


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no MAHAVISHNU_* variables or settings files, `tmp_path` as the only root,
    and the manifest in the working folder (`repos.yaml`, so messages name it short)."""
    for name in list(os.environ):
        if name.startswith("MAHAVISHNU_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAHAVISHNU_ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    monkeypatch.setenv("MAHAVISHNU_REPOS_FILE", "repos.yaml")
    monkeypatch.setenv("COLUMNS", "250")
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def git_init(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture
def code(workdir: Path) -> Path:
    root = workdir / "code"
    git_init(root / "alpha")
    git_init(root / "group" / "beta")
    (root / "alpha" / "pyproject.toml").write_text('[project]\nname = "alpha"\n')
    return root


def write_manifest(workdir: Path, entries: list[dict[str, object]], name: str = "repos.yaml") -> Path:
    """One entry a line (JSON is YAML), so entry N sits on line N + 1."""
    lines = ["repos:" if entries else "repos: []", *(f"  - {json.dumps(entry)}" for entry in entries)]
    path = workdir / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fleet(workdir: Path) -> Path:
    for folder in ("akosha", "crackerjack", "[web]/ui"):
        git_init(workdir / folder)
    return write_manifest(
        workdir,
        [
            {"name": "akosha", "nickname": "ako", "path": str(workdir / "akosha"), "role": "diviner",
             "tags": ["python", "search"], "description": "Semantic search"},
            {"name": "crackerjack", "nickname": "cj", "path": str(workdir / "crackerjack"),
             "role": "inspector", "tags": ["python"]},
            {"name": "webui", "path": str(workdir / "[web]" / "ui"), "role": "app", "tags": ["typescript"]},
        ],
    )  # fmt: skip


# --- init -------------------------------------------------------------------------------


def test_init_writes_a_valid_manifest_of_the_repositories_found(code: Path, workdir: Path) -> None:
    result = run("init", str(code))
    assert result.exit_code == 0, result.output
    assert result.stdout == "wrote 2 repositories to repos.yaml\n"
    assert run("validate").stdout == "OK: 2 repositories\n"
    listed = json.loads(run("list", "--json").stdout)
    assert [(r["name"], r["path"], r["tags"]) for r in listed] == [
        ("alpha", str(code / "alpha"), ["python"]),
        ("beta", str(code / "group" / "beta"), []),
    ]


def test_init_writes_where_output_says(code: Path, workdir: Path) -> None:
    result = run("init", str(code), "--output", "elsewhere.yaml")
    assert result.exit_code == 0, result.output
    assert (workdir / "elsewhere.yaml").is_file()
    assert not (workdir / "repos.yaml").exists()


def test_init_honours_the_settings_file_location(
    code: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_REPOS_FILE", str(workdir / "configured.yaml"))
    assert run("init", str(code)).exit_code == 0
    assert (workdir / "configured.yaml").is_file()


def test_init_refuses_to_overwrite_without_force(code: Path, workdir: Path) -> None:
    (workdir / "repos.yaml").write_text("precious")
    result = run("init", str(code))
    assert result.exit_code == 1
    assert result.stderr == "repos.yaml already exists; pass --force to overwrite it\n"
    assert (workdir / "repos.yaml").read_text() == "precious"

    forced = run("init", str(code), "--force")
    assert forced.exit_code == 0, forced.output
    assert "name: alpha" in (workdir / "repos.yaml").read_text()


def test_init_max_depth_limits_the_search(code: Path) -> None:
    assert run("init", str(code), "--max-depth", "1").stdout == "wrote 1 repositories to repos.yaml\n"
    assert [r["name"] for r in json.loads(run("list", "--json").stdout)] == ["alpha"]


def test_init_reports_what_is_wrong_with_what_it_wrote(
    code: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_ALLOWED_ROOTS", json.dumps([str(workdir / "elsewhere")]))
    result = run("init", str(code))
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("repos.yaml:")]
    assert len(problems) == 2
    assert all("outside the allowed roots" in line for line in problems)
    assert "which the MAHAVISHNU_ALLOWED_ROOTS environment variable sets" in result.stdout
    assert "hint: allowed_roots is set by the MAHAVISHNU_ALLOWED_ROOTS environment variable" in result.stderr
    assert (workdir / "repos.yaml").is_file()


def test_init_leaves_out_the_default_role_when_the_settings_do_not_have_it(
    code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_ROLES", json.dumps(["app"]))
    assert run("init", str(code)).exit_code == 0
    assert {r["role"] for r in json.loads(run("list", "--json").stdout)} == {None}


def test_init_needs_an_existing_folder(workdir: Path) -> None:
    result = run("init", str(workdir / "absent"))
    assert result.exit_code == 2
    assert not (workdir / "repos.yaml").exists()


# --- validate ---------------------------------------------------------------------------


def test_validate_prints_every_problem_with_its_line(workdir: Path) -> None:
    path = workdir / "repos.yaml"
    path.write_text(f"repos:\n  - name: a\n    path: {workdir}/a\n  - name: a\n    path: relative\n  - 7\n")
    result = run("validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "repos.yaml:4: duplicate name 'a' (first used on line 2)",
        "repos.yaml:5: path 'relative' must be absolute (a leading '~' is not expanded)",
        "repos.yaml:6: each repository must be a mapping with name and path, not a number",
    ]


def test_validate_takes_the_file_as_argument_or_option(fleet: Path, workdir: Path) -> None:
    other = write_manifest(workdir, [], "other.yaml")
    assert run("validate").stdout == "OK: 3 repositories\n"
    assert run("validate", str(other)).stdout == "OK: 0 repositories\n"
    assert run("validate", "--repos", str(other)).stdout == "OK: 0 repositories\n"
    both = run("validate", str(other), "--repos", str(fleet))
    assert both.exit_code == 2
    assert "not both" in both.stderr


def test_validate_a_missing_file_hints_at_init(workdir: Path) -> None:
    result = run("validate", "absent.yaml")
    assert result.exit_code == 1
    assert result.stdout == "absent.yaml: file not found; create it with `mahavishnu repos init ROOT`\n"


# --- list -------------------------------------------------------------------------------


def test_list_prints_a_table(fleet: Path) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "name" in line)
    assert header.split() == ["┃", "name", "┃", "nickname", "┃", "role", "┃", "tags", "┃", "path", "┃"]
    akosha = next(line for line in lines if "akosha" in line)
    cells = [cell.strip() for cell in akosha.split("│")[1:-1]]
    assert cells == ["akosha", "ako", "diviner", "python, search", str(fleet.parent / "akosha")]
    assert str(fleet.parent / "[web]" / "ui") in result.stdout


def test_list_filters_by_tag_role_and_query(fleet: Path) -> None:
    def names(*args: str) -> list[str]:
        result = run("list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["name"] for r in json.loads(result.stdout)]

    assert names() == ["akosha", "crackerjack", "webui"]
    assert names("--tag", "python") == ["akosha", "crackerjack"]
    assert names("--role", "app") == ["webui"]
    assert names("--query", "SEARCH") == ["akosha"]
    assert names("--tag", "python", "--role", "app") == []


def test_list_json_has_every_field(fleet: Path, workdir: Path) -> None:
    first = json.loads(run("list", "--json", "--role", "diviner").stdout)
    assert first == [
        {
            "name": "akosha",
            "nickname": "ako",
            "package": None,
            "path": str(workdir / "akosha"),
            "role": "diviner",
            "tags": ["python", "search"],
            "description": "Semantic search",
            "mcp": None,
            "host": None,
        }
    ]


def test_list_says_when_nothing_matches(fleet: Path, workdir: Path) -> None:
    assert run("list", "--tag", "rust").stdout == "no repositories match\n"
    empty = write_manifest(workdir, [], "empty.yaml")
    assert run("list", "--repos", str(empty)).stdout == "the manifest lists no repositories\n"


def test_list_refuses_a_broken_manifest_cleanly(workdir: Path) -> None:
    write_manifest(workdir, [{"name": "a", "path": "/etc"}])
    result = run("list")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error: the manifest has 1 problem:",
        f"  repos.yaml:2: path '/etc' resolves to /etc, outside the allowed roots ({workdir})",
        "hint: allowed_roots is set by the MAHAVISHNU_ALLOWED_ROOTS environment variable: change it there; "
        "a running server reads settings only at start-up: restart it after the change",
    ]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["list"], ["validate"], ["init", "."]])
def test_unusable_settings_exit_2_without_a_traceback(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("MAHAVISHNU_MANIFEST_POLL_SECONDS", "0")
    result = run(*command)
    assert result.exit_code == 2
    assert result.stderr.startswith("configuration error: invalid settings: manifest_poll_seconds")
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


# --- validate: folders that exist and are git work trees --------------------------------


@pytest.fixture
def odd_folders(workdir: Path) -> Path:
    """One repository of each kind a workflow would fail on, and three that are fine."""
    (workdir / "plain").mkdir()
    (workdir / "a-file").write_text("not a folder\n")
    subprocess.run(["git", "init", "--quiet", "--bare", str(workdir / "bare.git")], check=True)
    main = make_git_repo(workdir / "main")
    (main / "sub").mkdir()
    subprocess.run(
        ["git", "-C", str(main), "worktree", "add", "--quiet", str(workdir / "linked")],
        check=True,
        capture_output=True,
    )
    names = ["missing", "plain", "a-file", "bare.git", "main", "sub", "linked"]
    paths = {name: workdir / name for name in names} | {"sub": main / "sub"}
    return write_manifest(workdir, [{"name": name, "path": str(path)} for name, path in paths.items()])


def test_validate_warns_about_folders_that_are_missing_or_not_work_trees(
    odd_folders: Path, workdir: Path
) -> None:
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"repos.yaml:2: warning: repository 'missing': path '{workdir}/missing' does not exist",
        f"repos.yaml:3: warning: repository 'plain': path '{workdir}/plain' is not a git work tree "
        "(no .git in it or in a folder above it)",
        f"repos.yaml:4: warning: repository 'a-file': path '{workdir}/a-file' is not a folder",
        f"repos.yaml:5: warning: repository 'bare.git': path '{workdir}/bare.git' is a bare git "
        "repository, which has no work tree to run commands in",
        "OK: 7 repositories, 4 warnings (--strict makes them errors)",
    ]


def test_validate_strict_makes_the_warnings_errors(odd_folders: Path) -> None:
    result = run("validate", "--strict")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"repos.yaml:{n}" for n in (2, 3, 4, 5)]
    assert not any("warning" in line or line.startswith("OK") for line in lines)
    assert "'missing': path" in lines[0]


def test_validate_strict_passes_a_manifest_of_work_trees(fleet: Path) -> None:
    result = run("validate", "--strict")
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: 3 repositories\n"


# --- filters that can never match ---------------------------------------------------------


@pytest.mark.parametrize("tag", ["BAD!", "a b", "-lead", "x" * 65, ""])
def test_list_refuses_a_tag_no_repository_can_have(fleet: Path, tag: str) -> None:
    result = run("list", "--tag", tag)
    assert result.exit_code == 2
    assert f"tag {tag!r} is malformed, so no repository can have it" in " ".join(result.stderr.split())
    assert "no repositories match" not in result.output


def test_list_tag_filters_ignore_case(fleet: Path) -> None:
    result = run("list", "--json", "--tag", "PYTHON")
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.stdout)] == ["akosha", "crackerjack"]


def test_list_refuses_a_role_the_settings_do_not_have(fleet: Path) -> None:
    result = run("list", "--role", "wizard")
    assert result.exit_code == 2
    assert "unknown role 'wizard'; expected one of: app, asset" in " ".join(result.stderr.split())


# --- init outside the allowed roots -------------------------------------------------------


@pytest.fixture
def outside(code: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A first setup: no allowed_roots anywhere, so the default (the home folder, elsewhere) applies
    and the settings file (the XDG one, not there yet) is where it belongs."""
    monkeypatch.delenv("MAHAVISHNU_ALLOWED_ROOTS")
    monkeypatch.setenv("HOME", str(workdir / "home"))
    assert not MahavishnuSettings.settings_file().exists()
    return code


RESTART = "a running server reads settings only at start-up: restart it after the change"


def test_init_allow_root_adds_the_folder_to_the_settings_file(outside: Path) -> None:
    settings_file = MahavishnuSettings.settings_file()
    result = run("init", str(outside), "--allow-root")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "wrote 2 repositories to repos.yaml",
        f"added {outside} to allowed_roots in {settings_file}; {RESTART}",
    ]
    assert yaml.safe_load(settings_file.read_text()) == {"allowed_roots": ["~", str(outside)]}
    assert run("validate", "--strict").stdout == "OK: 2 repositories\n"


def test_init_without_allow_root_says_which_file_to_edit(outside: Path) -> None:
    settings_file = MahavishnuSettings.settings_file()
    for args in ([], ["--no-allow-root"]):
        result = run("init", str(outside), "--force", *args)
        assert result.exit_code == 1
        assert sum("outside the allowed roots" in line for line in result.stdout.splitlines()) == 2
        assert f"hint: allowed_roots is read from {settings_file}: edit it there" in result.stderr
        assert "--allow-root" in result.stderr
        assert RESTART in result.stderr
        assert not settings_file.exists()


def test_init_inside_the_allowed_roots_leaves_the_settings_alone(code: Path) -> None:
    result = run("init", str(code), "--allow-root")
    assert result.exit_code == 0, result.output
    assert not MahavishnuSettings.settings_file().exists()
    assert "added" not in result.stdout


def spawn_init(workdir: Path, code: Path) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "mahavishnu", "repos", "init", str(code)],
        cwd=str(workdir),
        env=dict(os.environ),
        encoding="utf-8",
        dimensions=(24, 250),
        timeout=60,
    )


@pytest.mark.parametrize("answer", ["y", "n"])
def test_init_on_a_terminal_offers_to_add_the_folder(outside: Path, workdir: Path, answer: str) -> None:
    settings_file = MahavishnuSettings.settings_file()
    terminal = spawn_init(workdir, outside)
    terminal.expect(rf"{outside} is outside allowed_roots\. Add it in {settings_file}\? \[Y/n\]")
    terminal.sendline(answer)
    terminal.expect(pexpect.EOF)
    terminal.close()
    if answer == "y":
        assert terminal.exitstatus == 0, terminal.before
        assert f"added {outside} to allowed_roots" in terminal.before
        assert yaml.safe_load(settings_file.read_text()) == {"allowed_roots": ["~", str(outside)]}
    else:
        assert terminal.exitstatus == 1
        assert "hint: allowed_roots is read from" in terminal.before
        assert not settings_file.exists()

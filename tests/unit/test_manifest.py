"""The repository manifest: model, validation (every problem, with its line), loading, hot reload."""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from anyio.streams.memory import MemoryObjectReceiveStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from mahavishnu.orchestrator import manifest as manifest_module
from mahavishnu.orchestrator.discovery import render_manifest
from mahavishnu.orchestrator.manifest import (
    Manifest,
    ManifestError,
    ManifestNotFoundError,
    ManifestStore,
    Problem,
    Repo,
    load_manifest,
    validate_manifest,
)
from mahavishnu.orchestrator.settings import DEFAULT_ROLES
from mahavishnu.platform.errors import ConfigurationError

SOURCE = "repos.yaml"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    return folder


def check(
    text: str, root: Path, roles: tuple[str, ...] = DEFAULT_ROLES
) -> tuple[Manifest | None, list[Problem]]:
    return validate_manifest(textwrap.dedent(text), SOURCE, allowed_roots=[root], roles=roles)


def located(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(problem.line, problem.message) for problem in problems]


def only_problem(text: str, root: Path) -> Problem:
    manifest, problems = check(text, root)
    assert manifest is None
    assert len(problems) == 1, located(problems)
    return problems[0]


def repo(name: str, root: Path, **fields: object) -> Repo:
    return Repo.model_validate({"name": name, "path": root / name, **fields})


# --- the model -----------------------------------------------------------------------


def test_a_complete_entry_becomes_a_repo(root: Path) -> None:
    manifest, problems = check(
        f"""
        repos:
          - name: mahavishnu
            nickname: vishnu
            package: mahavishnu
            path: {root}/mahavishnu
            role: orchestrator
            tags: [python, mcp]
            description: Orchestrates repositories
            mcp: server
        """,
        root,
    )
    assert problems == []
    assert manifest is not None
    assert manifest.repos == (
        Repo(
            name="mahavishnu",
            nickname="vishnu",
            package="mahavishnu",
            path=root / "mahavishnu",
            role="orchestrator",
            tags=("python", "mcp"),
            description="Orchestrates repositories",
            mcp="server",
        ),
    )


def test_optional_fields_default_and_null_means_default(root: Path) -> None:
    manifest, problems = check(
        f"""
        repos:
          - {{name: bare, path: {root}/bare}}
          - {{name: nulls, path: {root}/nulls, nickname: null, package: ~, role: null,
              tags: null, description: null, mcp: null}}
        """,
        root,
    )
    assert problems == []
    assert manifest is not None
    for entry in manifest:
        assert (entry.nickname, entry.package, entry.role) == (None, None, None)
        assert (entry.tags, entry.description, entry.mcp) == ((), "", None)


def test_repos_are_immutable(root: Path) -> None:
    entry = repo("a", root, tags=["x"])
    assert entry.tags == ("x",)
    with pytest.raises(ValidationError):
        entry.name = "b"  # type: ignore[misc]


@pytest.mark.parametrize(
    "fields",
    [{"name": "two words"}, {"nickname": "-x"}, {"path": Path("relative")}, {"tags": ("Upper",)}],
)
def test_the_model_applies_the_field_rules_to_code_that_builds_repos(
    root: Path, fields: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        Repo.model_validate({"name": "ok", "path": root / "ok", **fields})


def test_manifest_sorts_by_name_whatever_the_input_order(root: Path) -> None:
    manifest = Manifest([repo("zeta", root), repo("Alpha", root), repo("beta", root)])
    assert [r.name for r in manifest] == ["Alpha", "beta", "zeta"]
    assert Manifest(reversed(manifest.repos)) == manifest


def test_find_by_name_or_nickname_ignores_case(root: Path) -> None:
    manifest = Manifest([repo("CrackerJack", root, nickname="cj"), repo("Akosha", root)])
    akosha, crackerjack = manifest.repos
    assert manifest.find("crackerjack") is crackerjack
    assert manifest.find("CJ") is crackerjack
    assert manifest.find("AKOSHA") is akosha
    assert manifest.find("nothing") is None


def test_a_name_wins_over_another_repos_nickname(root: Path) -> None:
    """Validation refuses this; a Manifest built in code still answers predictably."""
    manifest = Manifest([repo("a", root, nickname="b"), repo("b", root)])
    assert manifest.find("b") is manifest.repos[1]


def test_roles_lists_the_names_playing_each_role(root: Path) -> None:
    manifest = Manifest(
        [
            repo("web", root, role="app"),
            repo("admin", root, role="app"),
            repo("lint", root, role="inspector"),
            repo("loose", root),
        ]
    )
    assert manifest.roles() == {"app": ("admin", "web"), "inspector": ("lint",)}


def test_filter_combines_tag_role_and_query(root: Path) -> None:
    manifest = Manifest(
        [
            repo("akosha", root, role="diviner", tags=["python"], description="Semantic SEARCH"),
            repo("crackerjack", root, nickname="cj", role="inspector", tags=["python"]),
            repo("webui", root, role="app", tags=["typescript"], package="web-ui-pkg"),
        ]
    )

    def names(found: tuple[Repo, ...]) -> list[str]:
        return [r.name for r in found]

    assert names(manifest.filter()) == ["akosha", "crackerjack", "webui"]
    assert names(manifest.filter(tag="python")) == ["akosha", "crackerjack"]
    assert names(manifest.filter(tag="Python")) == ["akosha", "crackerjack"]
    assert names(manifest.filter(role="app")) == ["webui"]
    assert names(manifest.filter(query="search")) == ["akosha"]
    assert names(manifest.filter(query="CJ")) == ["crackerjack"]
    assert names(manifest.filter(query="UI-PKG")) == ["webui"]
    assert names(manifest.filter(tag="python", role="inspector")) == ["crackerjack"]
    assert names(manifest.filter(tag="python", query="web")) == []


def test_paths_optionally_by_tag(root: Path) -> None:
    manifest = Manifest([repo("b", root, tags=["go"]), repo("a", root)])
    assert manifest.paths() == (root / "a", root / "b")
    assert manifest.paths(tag="go") == (root / "b",)


def test_problem_prints_as_file_line_message() -> None:
    assert str(Problem("repos.yaml", 4, "bad")) == "repos.yaml:4: bad"
    assert str(Problem("repos.yaml", None, "bad")) == "repos.yaml: bad"


# --- validation: structure ------------------------------------------------------------


def test_an_empty_list_is_a_valid_empty_manifest(root: Path) -> None:
    manifest, problems = check("repos: []\n", root)
    assert problems == []
    assert manifest == Manifest()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "the file is empty"),
        ("- a\n- b\n", 1, "top level must be a mapping with a 'repos:' list, not a list"),
        ("just text\n", 1, "not a string"),
        ("repos: []\nother: []\n", 2, "unknown top-level key 'other'; only 'repos' is allowed"),
        ("repos:\n", 1, "write 'repos: []' for an empty manifest"),
        ("repos:\n  name: a\n", 2, "'repos' must be a list, not a mapping"),
        ("repos: []\nrepos: []\n", 2, "'repos' is given twice (first on line 1)"),
        ("repos:\n  - name: a\n   path: /x\n", 3, "invalid YAML: expected <block end>"),
        ("repos: [\n", 2, "invalid YAML"),
        ("repos: []\n\x07\n", 2, "invalid YAML: character U+0007 is not allowed"),
        ("repos:\n  - 5\n", 2, "each repository must be a mapping with name and path, not a number"),
    ],
)
def test_structural_problems_are_located(root: Path, text: str, line: int, fragment: str) -> None:
    problem = only_problem(text, root)
    assert problem.line == line
    assert fragment in problem.message
    assert problem.file == SOURCE


def test_missing_top_level_repos_is_reported(root: Path) -> None:
    manifest, problems = check("other: 1\n", root)
    assert manifest is None
    assert "missing the top-level 'repos:' list" in [p.message for p in problems]


def test_absurd_nesting_is_a_problem_not_a_crash(root: Path) -> None:
    problem = only_problem("[" * 5000 + "]" * 5000, root)
    assert problem.message == "invalid YAML: nested too deeply"


# --- validation: one entry ------------------------------------------------------------


def test_missing_name_and_path_are_both_reported_on_the_entry_line(root: Path) -> None:
    manifest, problems = check(
        """
        repos:
          - role: tool
        """,
        root,
    )
    assert manifest is None
    assert located(problems) == [
        (3, "repository is missing the required field 'name'"),
        (3, "repository is missing the required field 'path'"),
    ]


def entry_with(field: str, value: str, root: Path) -> str:
    """One repository whose `field` (on line 4) is `value`; the name defaults to a good one."""
    name = "" if field == "name" else "name: ok"
    return f"""
        repos:
          - path: {root}/a
            {field}: {value}
            {name}
        """


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "123", "name must be a string, not a number"),
        ("name", "true", "name must be a string, not a boolean"),
        ("nickname", "[a]", "nickname must be a string, not a list"),
        ("package", "2024-01-01", "package must be a string, not a date"),
        ("description", "{a: b}", "description must be a string, not a mapping"),
        ("tags", "python", "tags must be a list of strings, not a string"),
        ("tags", "[1.5]", "each tag must be a string, not a number"),
        ("mcp", "yes", "mcp must be a string, not a boolean"),
        ("role", "!custom x", "role must be a string, not a value tagged !custom"),
    ],
)
def test_wrong_types_are_reported_on_the_value_line(root: Path, field: str, value: str, message: str) -> None:
    problem = only_problem(entry_with(field, value, root), root)
    assert (problem.line, problem.message) == (4, message)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("name", "two words", "name 'two words' must be 1-100 letters"),
        ("name", "-dash", "name '-dash' must be"),
        ("name", "x" * 101, "must be 1-100"),
        ("nickname", "a/b", "nickname 'a/b' must be"),
        ("tags", "[Python]", "tag 'Python' must be 1-64 lowercase"),
        ("tags", "[_x]", "tag '_x' must be"),
        ("tags", f"[{'t' * 65}]", "must be 1-64"),
        ("tags", "[py, py]", "tag 'py' is listed twice"),
        ("package", "'my pkg'", "package 'my pkg' must be 1-214 characters without spaces"),
        ("role", "wizard", "unknown role 'wizard'; expected one of: app, asset,"),
        ("mcp", "srv", "mcp must be one of server, client, none (or null), not 'srv'"),
        ("nickame", "x", "unknown field 'nickame'; did you mean 'nickname'?"),
        ("colour", "red", "unknown field 'colour'; known fields: name, nickname, package, path"),
    ],
)
def test_bad_values_are_reported_on_their_line(root: Path, field: str, value: str, fragment: str) -> None:
    problem = only_problem(entry_with(field, value, root), root)
    assert fragment in problem.message
    assert problem.line == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "x" * 100), ("name", "A.b_c-9"), ("tags", f"[{'t' * 64}, a.b_c-9]"), ("mcp", "client")],
)
def test_values_at_the_limits_are_accepted(root: Path, field: str, value: str) -> None:
    manifest, problems = check(entry_with(field, value, root), root)
    assert problems == []
    assert manifest is not None


def test_roles_come_from_the_caller(root: Path) -> None:
    text = f"repos: [{{name: a, path: {root}/a, role: wizard}}]"
    assert check(text, root, roles=("wizard",))[1] == []
    assert "unknown role 'wizard'; expected one of: app" in check(text, root, roles=("app",))[1][0].message


def test_a_field_given_twice_is_reported(root: Path) -> None:
    problem = only_problem(
        f"""
        repos:
          - name: a
            path: {root}/a
            name: b
        """,
        root,
    )
    assert (problem.line, problem.message) == (5, "'name' is given twice (first on line 3)")


def test_merge_keys_are_refused(root: Path) -> None:
    problem = only_problem(f"repos: [{{name: a, path: {root}/a, <<: {{role: app}}}}]", root)
    assert "merge key (<<)" in problem.message


# --- validation: paths ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["relative/repo", "~/repo", "./repo"])
def test_relative_paths_are_refused(root: Path, path: str) -> None:
    problem = only_problem(f"repos: [{{name: a, path: '{path}'}}]", root)
    assert problem.message == f"path {path!r} must be absolute (a leading '~' is not expanded)"


def test_a_nul_in_a_path_is_a_problem_not_a_crash(root: Path) -> None:
    problem = only_problem(f'repos: [{{name: a, path: "{root}/a\\0b"}}]', root)
    assert problem.message == "path contains a NUL character"


def test_paths_outside_the_allowed_roots_are_refused(root: Path) -> None:
    problem = only_problem("repos: [{name: a, path: /etc}]", root)
    assert problem.message == f"path '/etc' resolves to /etc, outside the allowed roots ({root})"


def test_dot_dot_cannot_escape_the_roots(root: Path) -> None:
    sneaky = f"{root}/../outside"
    problem = only_problem(f"repos: [{{name: a, path: '{sneaky}'}}]", root)
    assert f"resolves to {root.parent / 'outside'}, outside the allowed roots" in problem.message


def test_a_symlink_cannot_escape_the_roots(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    (root / "link").symlink_to(outside)
    problem = only_problem(f"repos: [{{name: a, path: {root}/link/secret}}]", root)
    assert f"resolves to {outside / 'secret'}, outside the allowed roots" in problem.message


def test_a_symlink_inside_the_roots_is_fine(root: Path) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    manifest, problems = check(f"repos: [{{name: a, path: {root}/alias}}]", root)
    assert problems == []
    assert manifest is not None
    assert manifest.repos[0].path == root / "alias"


def test_allowed_roots_are_resolved_too(root: Path, tmp_path: Path) -> None:
    (tmp_path / "root-link").symlink_to(root)
    text = f"repos: [{{name: a, path: {root}/a}}]"
    manifest, problems = validate_manifest(text, SOURCE, allowed_roots=[tmp_path / "root-link"], roles=())
    assert problems == []
    assert manifest is not None


def test_no_allowed_roots_refuses_every_path(root: Path) -> None:
    text = f"repos: [{{name: a, path: {root}/a}}]"
    _, problems = validate_manifest(text, SOURCE, allowed_roots=[], roles=())
    assert "outside the allowed roots (none are configured)" in problems[0].message


def test_an_unresolvable_path_is_a_problem_not_a_crash(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.realpath

    def flaky(path: str) -> str:
        if str(path).endswith("/flaky"):
            raise OSError("Too many levels of symbolic links")
        return real(path)

    monkeypatch.setattr(os.path, "realpath", flaky)
    problem = only_problem(f"repos: [{{name: a, path: {root}/flaky/a}}]", root)
    assert problem.message == f"cannot resolve path '{root}/flaky/a': Too many levels of symbolic links"


# --- validation: across entries ---------------------------------------------------------


def test_duplicate_names_ignore_case_and_point_at_the_first(root: Path) -> None:
    manifest, problems = check(
        f"""
        repos:
          - name: akosha
            path: {root}/a
          - name: Akosha
            path: {root}/b
          - name: akosha
            path: {root}/c
        """,
        root,
    )
    assert manifest is None
    assert located(problems) == [
        (5, "duplicate name 'Akosha' (first used on line 3)"),
        (7, "duplicate name 'akosha' (first used on line 3)"),
    ]


def test_duplicate_nicknames_and_nicknames_shadowing_names(root: Path) -> None:
    manifest, problems = check(
        f"""
        repos:
          - name: alpha
            nickname: al
            path: {root}/a
          - name: beta
            nickname: AL
            path: {root}/b
          - name: gamma
            nickname: Alpha
            path: {root}/c
          - name: delta
            nickname: delta
            path: {root}/d
        """,
        root,
    )
    assert manifest is None
    assert located(problems) == [
        (7, "duplicate nickname 'AL' (first used on line 4)"),
        (10, "nickname 'Alpha' is the name of the repository on line 3"),
    ]


def test_paths_are_compared_after_resolution(root: Path) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    manifest, problems = check(
        f"""
        repos:
          - {{name: a, path: {root}/real}}
          - {{name: b, path: {root}/other/../real}}
          - {{name: c, path: {root}/alias/}}
          - {{name: d, path: {root}/elsewhere}}
        """,
        root,
    )
    assert manifest is None
    assert located(problems) == [
        (4, f"path '{root}/other/../real' is the same folder ({root}/real) as on line 3"),
        (5, f"path '{root}/alias/' is the same folder ({root}/real) as on line 3"),
    ]


def test_duplicates_on_one_line_are_still_found(root: Path) -> None:
    manifest, problems = check(f"repos: [{{name: a, path: {root}/x}}, {{name: A, path: {root}/x}}]", root)
    assert manifest is None
    assert [p.message.split(" (")[0] for p in problems] == [
        "duplicate name 'A'",
        f"path '{root}/x' is the same folder",
    ]


def test_every_problem_is_reported_at_once_in_line_order(root: Path) -> None:
    manifest, problems = check(
        f"""
        repos:
          - name: good
            path: {root}/good
          - name: bad name
            path: relative
            tags: [Python]
          - name: good
            path: /etc
            role: wizard
            colour: red
          - just a string
        """,
        root,
    )
    assert manifest is None
    assert [p.line for p in problems] == [5, 6, 7, 8, 9, 10, 11, 12]
    assert len({p.message for p in problems}) == 8


# --- loading ----------------------------------------------------------------------------


def test_load_manifest_reads_a_good_file(root: Path) -> None:
    path = root / "repos.yaml"
    path.write_text(f"repos: [{{name: a, path: {root}/a}}]\n")
    manifest = load_manifest(path, allowed_roots=[root], roles=DEFAULT_ROLES)
    assert [r.name for r in manifest] == ["a"]


def test_load_manifest_raises_every_problem(root: Path) -> None:
    path = root / "repos.yaml"
    path.write_text("repos:\n  - name: a\n  - path: /etc\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, allowed_roots=[root], roles=DEFAULT_ROLES)
    assert isinstance(caught.value, ConfigurationError)
    assert [p.line for p in caught.value.problems] == [2, 3, 3]
    assert caught.value.message.splitlines()[0] == "the manifest has 3 problems:"
    assert f"  {path}:2: repository is missing the required field 'path'" in caught.value.message


def test_a_missing_file_is_reported_distinctly_with_a_hint(root: Path) -> None:
    with pytest.raises(ManifestNotFoundError) as caught:
        load_manifest(root / "absent.yaml", allowed_roots=[root], roles=())
    assert (
        caught.value.message
        == f"{root / 'absent.yaml'}: file not found; create it with `mahavishnu repos init ROOT`"
    )


def test_unreadable_files_are_manifest_errors(root: Path) -> None:
    binary = root / "binary.yaml"
    binary.write_bytes(b"repos: []\n\xff\xfe")
    with pytest.raises(ManifestError, match="not UTF-8 text"):
        load_manifest(binary, allowed_roots=[root], roles=())
    with pytest.raises(ManifestError, match="cannot read the file: Is a directory"):
        load_manifest(root, allowed_roots=[root], roles=())


# --- the reloading store ----------------------------------------------------------------


def write(path: Path, names: list[str], root: Path) -> None:
    entries = [{"name": name, "path": str(root / name)} for name in names]
    path.write_text(yaml.safe_dump({"repos": entries}))


@pytest.fixture
def manifest_file(root: Path) -> Path:
    path = root / "repos.yaml"
    write(path, ["alpha"], root)
    return path


@pytest.fixture
def store(manifest_file: Path, root: Path) -> ManifestStore:
    return ManifestStore(manifest_file, allowed_roots=[root], roles=DEFAULT_ROLES)


def names_of(store: ManifestStore) -> list[str]:
    return [r.name for r in store.manifest]


def test_the_first_check_loads_and_later_checks_only_reload_on_change(store: ManifestStore) -> None:
    assert store.generation == 0
    assert store.loaded_at is None
    assert store.reload_if_changed() is True
    assert (names_of(store), store.generation, store.exists, store.problems) == (["alpha"], 1, True, None)
    assert store.loaded_at is not None
    assert store.reload_if_changed() is False
    assert store.generation == 1


def test_an_edit_is_picked_up(store: ManifestStore, manifest_file: Path, root: Path) -> None:
    store.reload_if_changed()
    write(manifest_file, ["alpha", "beta"], root)
    assert store.reload_if_changed() is True
    assert (names_of(store), store.generation) == (["alpha", "beta"], 2)


def test_a_same_size_edit_is_seen_through_the_mtime(
    store: ManifestStore, manifest_file: Path, root: Path
) -> None:
    store.reload_if_changed()
    before = manifest_file.stat()
    write(manifest_file, ["gamma"], root)
    os.utime(manifest_file, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert manifest_file.stat().st_size == before.st_size
    assert manifest_file.stat().st_ino == before.st_ino
    assert store.reload_if_changed() is True
    assert names_of(store) == ["gamma"]


def test_an_atomic_replace_is_seen_through_the_inode(
    store: ManifestStore, manifest_file: Path, root: Path
) -> None:
    store.reload_if_changed()
    before = manifest_file.stat()
    replacement = root / "new.yaml"
    write(replacement, ["gamma"], root)
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, manifest_file)
    after = manifest_file.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert store.reload_if_changed() is True
    assert names_of(store) == ["gamma"]


def test_a_broken_edit_keeps_the_last_good_manifest(
    store: ManifestStore, manifest_file: Path, root: Path
) -> None:
    seen: list[Manifest | None] = []
    store.add_listener(seen.append)
    store.reload_if_changed()
    manifest_file.write_text("repos:\n  - name: alpha\n")
    with capture_logs() as logs:
        assert store.reload_if_changed() is False
    assert names_of(store) == ["alpha"]
    assert store.generation == 1
    assert store.problems is not None
    assert [(p.line, p.message) for p in store.problems] == [
        (2, "repository is missing the required field 'path'")
    ]
    assert logs[0]["event"] == "manifest_rejected"
    assert seen[-1] is None

    write(manifest_file, ["alpha", "beta"], root)
    assert store.reload_if_changed() is True
    assert store.problems is None
    assert seen[-1] is store.manifest
    assert len(seen) == 3


def test_a_rejected_edit_says_where_the_settings_it_depends_on_are_changed(
    store: ManifestStore, manifest_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings_file = tmp_path / "settings.yaml"
    monkeypatch.setenv("MAHAVISHNU_CONFIG", str(settings_file))
    monkeypatch.delenv("MAHAVISHNU_ALLOWED_ROOTS", raising=False)
    monkeypatch.delenv("MAHAVISHNU_ROLES", raising=False)
    manifest_file.write_text("repos:\n  - {name: a, path: /etc, role: wizard}\n")
    with capture_logs() as logs:
        assert store.reload_if_changed() is False
    assert logs[0]["event"] == "manifest_rejected"
    restart = "a running server reads settings only at start-up: restart it after the change"
    assert [hint.split(":")[0] for hint in logs[0]["hints"]] == [
        f"allowed_roots is read from {settings_file}",
        f"roles is read from {settings_file}",
    ]
    assert all(hint.endswith(restart) for hint in logs[0]["hints"])
    assert [p.setting for p in store.problems or ()] == ["roles", "allowed_roots"]


def test_a_vanished_file_keeps_the_last_good_manifest(store: ManifestStore, manifest_file: Path) -> None:
    store.reload_if_changed()
    manifest_file.unlink()
    with capture_logs() as logs:
        assert store.reload_if_changed() is False
    assert (names_of(store), store.exists, store.problems) == (["alpha"], False, None)
    assert [entry["event"] for entry in logs] == ["manifest_vanished"]


def test_a_missing_file_at_start_serves_an_empty_manifest_with_a_hint(root: Path) -> None:
    store = ManifestStore(root / "absent.yaml", allowed_roots=[root], roles=DEFAULT_ROLES)
    with capture_logs() as logs:
        assert store.reload_if_changed() is False
        assert store.reload_if_changed() is False
    assert (len(store.manifest), store.exists, store.generation) == (0, False, 0)
    assert len(logs) == 1
    assert logs[0]["hint"] == "create it with `mahavishnu repos init ROOT`"

    write(root / "absent.yaml", ["late"], root)
    assert store.reload_if_changed() is True
    assert (names_of(store), store.exists) == (["late"], True)


def test_a_failing_listener_does_not_stop_the_others(store: ManifestStore) -> None:
    seen: list[Manifest | None] = []

    def broken(manifest: Manifest | None) -> None:
        raise RuntimeError("boom")

    store.add_listener(broken)
    store.add_listener(seen.append)
    with capture_logs() as logs:
        assert store.reload_if_changed() is True
    assert seen == [store.manifest]
    assert any(entry["event"] == "manifest listener failed" for entry in logs)


def test_from_settings_uses_the_manifest_settings(root: Path, manifest_file: Path) -> None:
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    settings = MahavishnuSettings.load(repos_file=manifest_file, allowed_roots=[root], roles=["tool"])
    store = ManifestStore.from_settings(settings)
    assert store.path == manifest_file
    assert store.reload_if_changed() is True


def reloads(store: ManifestStore) -> MemoryObjectReceiveStream[tuple[int, Manifest | None]]:
    """Each listener call, with the thread it ran on."""
    send, receive = anyio.create_memory_object_stream[tuple[int, Manifest | None]](10)
    store.add_listener(lambda manifest: send.send_nowait((threading.get_ident(), manifest)))
    return receive


@pytest.mark.parametrize("make_event", [anyio.Event, asyncio.Event])
async def test_watch_reloads_on_the_event_loop_thread_until_stopped(
    store: ManifestStore,
    manifest_file: Path,
    root: Path,
    make_event: Callable[[], anyio.Event | asyncio.Event],
) -> None:
    received = reloads(store)
    stop = make_event()
    async with anyio.create_task_group() as group:
        group.start_soon(store.watch, 0.01, stop)
        with anyio.fail_after(5):
            first = await received.receive()
        write(manifest_file, ["alpha", "beta"], root)
        with anyio.fail_after(5):
            second = await received.receive()
        stop.set()
    assert first == (threading.get_ident(), Manifest([repo("alpha", root)]))
    assert second == (threading.get_ident(), store.manifest)
    assert (names_of(store), store.generation) == (["alpha", "beta"], 2)


async def test_watch_reads_the_file_off_the_event_loop_thread(
    store: ManifestStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: list[int] = []

    def spying_load(*args: Any, **kwargs: Any) -> Manifest:
        readers.append(threading.get_ident())
        return load_manifest(*args, **kwargs)

    monkeypatch.setattr(manifest_module, "load_manifest", spying_load)
    received = reloads(store)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(store.watch, 0.01, stop)
        with anyio.fail_after(5):
            await received.receive()
        stop.set()
    assert readers
    assert threading.get_ident() not in readers


async def test_watch_without_a_stop_event_runs_until_cancelled(store: ManifestStore) -> None:
    received = reloads(store)
    async with anyio.create_task_group() as group:
        group.start_soon(store.watch, 0.01)
        with anyio.fail_after(5):
            await received.receive()
        group.cancel_scope.cancel()
    assert names_of(store) == ["alpha"]


# --- properties -------------------------------------------------------------------------

PROPERTY_ROOT = Path("/nonexistent-mahavishnu-root")
FIELDS = [*Repo.model_fields, "repos", "junk"]
fast = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def validate(text: str) -> tuple[Manifest | None, list[Problem]]:
    return validate_manifest(text, SOURCE, allowed_roots=[PROPERTY_ROOT], roles=DEFAULT_ROLES)


def assert_consistent(text: str, manifest: Manifest | None, problems: list[Problem]) -> None:
    assert (manifest is None) == bool(problems)
    for problem in problems:
        assert problem.file == SOURCE
        assert problem.message
        assert problem.line is None or 1 <= problem.line <= len(text.splitlines()) + 1


YAML_TOKENS = [
    "repos:", "\n", "  ", "- ", "name: ", "path: ", "tags: ", "nickname: ", "role: tool", "mcp: ",
    f"{PROPERTY_ROOT}/a", "../", "[", "]", "{", "}", ", ", "'", '"', "&a ", "*a", "!!int ", "!x ",
    "? ", "<<: ", "a", "A", "1", "null", "~", "# c", "---\n", "...\n", "\t", "\x85", "\\0", "|\n", ">-\n",
]  # fmt: skip
yamlish_text = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)


@fast
@given(st.text(max_size=300) | yamlish_text)
def test_the_validator_never_raises_on_any_text(text: str) -> None:
    assert_consistent(text, *validate(text))


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
structures = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
manifest_shaped = st.fixed_dictionaries(
    {"repos": st.lists(st.dictionaries(st.sampled_from(FIELDS), structures, max_size=9), max_size=5)}
)


@fast
@given(structures | manifest_shaped)
def test_the_validator_never_raises_on_any_yaml_structure(data: object) -> None:
    text = yaml.safe_dump(data)
    assert_consistent(text, *validate(text))


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
tag_lists = st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True), unique=True, max_size=4)


@st.composite
def valid_repos(draw: st.DrawFn) -> list[Repo]:
    chosen = draw(st.lists(names, unique_by=str.lower, max_size=8))
    taken = {name.lower() for name in chosen}
    repos = []
    for index, name in enumerate(chosen):
        nickname = draw(st.none() | names.filter(lambda n: n.lower() not in taken))
        if nickname is not None:
            taken.add(nickname.lower())
        fields = {
            "name": name,
            "nickname": nickname,
            "package": draw(st.none() | st.from_regex(r"[^\s\x00-\x1f\x7f]{1,40}", fullmatch=True)),
            "path": PROPERTY_ROOT / f"r{index}" / name,
            "role": draw(st.none() | st.sampled_from(DEFAULT_ROLES)),
            "tags": tuple(draw(tag_lists)),
            "description": draw(st.text(max_size=120)),
            "mcp": draw(st.sampled_from([None, "server", "client", "none"])),
        }
        repos.append(Repo.model_validate(fields))
    return repos


@fast
@given(valid_repos())
def test_a_valid_manifest_round_trips_through_render(repos: list[Repo]) -> None:
    text = render_manifest(repos)
    manifest, problems = validate(text)
    assert problems == []
    assert manifest == Manifest(repos)
    assert render_manifest(manifest.repos) == text


@fast
@given(st.lists(st.sampled_from(["a", "A", "b", "c-1", "C-1"]), max_size=12))
def test_duplicate_name_problems_count_the_duplicated_entries(chosen: list[str]) -> None:
    entries = [{"name": name, "path": str(PROPERTY_ROOT / str(i))} for i, name in enumerate(chosen)]
    _, problems = validate(yaml.safe_dump({"repos": entries}))
    duplicates = len(chosen) - len({name.lower() for name in chosen})
    assert len(problems) == duplicates
    assert all(p.message.startswith("duplicate name ") for p in problems)

"""Discovery of git repositories on disk, and writing them as a manifest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mahavishnu.orchestrator.discovery import (
    HEADER,
    discover_repositories,
    render_manifest,
    write_manifest,
)
from mahavishnu.orchestrator.manifest import Manifest, Repo, validate_manifest
from mahavishnu.orchestrator.settings import DEFAULT_ROLES


def git_init(folder: Path, *extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", *extra, str(folder)], check=True, capture_output=True)
    return folder


def found(root: Path, max_depth: int = 3) -> dict[str, Repo]:
    return {repo.name: repo for repo in discover_repositories(root, max_depth)}


def test_finds_repositories_at_any_depth_up_to_the_limit(tmp_path: Path) -> None:
    git_init(tmp_path / "top")
    git_init(tmp_path / "group" / "middle")
    git_init(tmp_path / "a" / "b" / "deepest")
    git_init(tmp_path / "a" / "b" / "c" / "too-deep")
    assert sorted(found(tmp_path)) == ["deepest", "middle", "top"]
    assert sorted(found(tmp_path, max_depth=4)) == ["deepest", "middle", "too-deep", "top"]
    assert sorted(found(tmp_path, max_depth=1)) == ["top"]


def test_the_root_itself_can_be_the_repository(tmp_path: Path) -> None:
    root = git_init(tmp_path / "solo")
    git_init(root / "vendor" / "inner")
    assert [repo.path for repo in discover_repositories(root, max_depth=0)] == [root]
    assert [repo.path for repo in discover_repositories(root)] == [root]


def test_does_not_descend_into_repositories_hidden_folders_or_node_modules(tmp_path: Path) -> None:
    outer = git_init(tmp_path / "outer")
    git_init(outer / "nested")
    git_init(tmp_path / ".hidden" / "secret")
    git_init(tmp_path / ".venv" / "src" / "pkg")
    git_init(tmp_path / "node_modules" / "dep")
    git_init(tmp_path / "web" / "node_modules" / "dep2")
    git_init(tmp_path / "visible")
    assert sorted(found(tmp_path)) == ["outer", "visible"]


def test_a_git_file_marks_a_repository_too(tmp_path: Path) -> None:
    worktree = tmp_path / "code" / "checkout"
    git_init(worktree, f"--separate-git-dir={tmp_path / 'store.git'}")
    assert (worktree / ".git").is_file()
    assert list(found(tmp_path / "code")) == ["checkout"]


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    git_init(tmp_path / "elsewhere" / "linked")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "code" / "loop").symlink_to(tmp_path / "code")
    assert found(tmp_path / "code") == {}


def test_paths_are_absolute_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git_init(tmp_path / "code" / "app")
    (tmp_path / "code-link").symlink_to(tmp_path / "code")
    monkeypatch.chdir(tmp_path)
    assert found(Path("code"))["app"].path == tmp_path / "code" / "app"
    assert found(Path("code-link"))["app"].path == tmp_path / "code" / "app"


def test_names_are_sanitized_and_clashes_get_suffixes(tmp_path: Path) -> None:
    git_init(tmp_path / "a" / "app")
    git_init(tmp_path / "b" / "App")
    git_init(tmp_path / "c" / "app")
    git_init(tmp_path / "d" / "my repo (old)!")
    git_init(tmp_path / "e" / "_private")
    git_init(tmp_path / "f" / "ü")
    repos = found(tmp_path)
    assert sorted(repos) == ["App-2", "app", "app-3", "my-repo-old", "private", "repo"]
    assert repos["app"].path == tmp_path / "a" / "app"
    assert repos["App-2"].path == tmp_path / "b" / "App"
    assert repos["app-3"].path == tmp_path / "c" / "app"


def test_a_long_folder_name_keeps_its_suffix_within_the_limit(tmp_path: Path) -> None:
    long = "x" * 120
    git_init(tmp_path / "a" / long)
    git_init(tmp_path / "b" / long)
    assert sorted(found(tmp_path)) == sorted(["x" * 100, "x" * 98 + "-2"])


def test_package_comes_from_the_project_metadata(tmp_path: Path) -> None:
    python = git_init(tmp_path / "py-thing")
    (python / "pyproject.toml").write_text('[project]\nname = "py-dist-name"\n')
    node = git_init(tmp_path / "node-thing")
    (node / "package.json").write_text('{"name": "@scope/node-pkg"}')
    git_init(tmp_path / "plain-thing")
    broken = git_init(tmp_path / "broken-thing")
    (broken / "pyproject.toml").write_text("[project\nname = 'x'")
    (broken / "package.json").write_text('{"name": "has space"}')
    repos = found(tmp_path)
    assert repos["py-thing"].package == "py-dist-name"
    assert repos["node-thing"].package == "@scope/node-pkg"
    assert repos["plain-thing"].package == "plain_thing"
    assert repos["broken-thing"].package == "broken_thing"


@pytest.mark.parametrize(
    ("markers", "tags"),
    [
        (["pyproject.toml"], ("python",)),
        (["setup.py"], ("python",)),
        (["package.json", "tsconfig.json"], ("javascript", "typescript")),
        (["Cargo.toml"], ("rust",)),
        (["go.mod"], ("go",)),
        (["setup.py", "go.mod"], ("go", "python")),
        ([], ()),
    ],
)
def test_tags_are_inferred_from_marker_files(
    tmp_path: Path, markers: list[str], tags: tuple[str, ...]
) -> None:
    repo = git_init(tmp_path / "r")
    for marker in markers:
        (repo / marker).write_text("{}" if marker.endswith(".json") else "")
    assert found(tmp_path)["r"].tags == tags


def test_defaults_for_what_cannot_be_inferred(tmp_path: Path) -> None:
    git_init(tmp_path / "r")
    repo = found(tmp_path)["r"]
    assert (repo.role, repo.nickname, repo.mcp, repo.description) == ("tool", None, None, "")
    assert discover_repositories(tmp_path, role=None)[0].role is None


README = """\
Title
=====

# Heading
Subtitle
--------
> a quote
| a | table |

[![build](https://ci/badge.svg)](https://ci)
<p align="center"><img src="logo.png"></p>

```bash
pip install thing
```

  The actual description of the thing.

More prose.
"""


def test_description_is_the_first_line_of_prose_in_the_readme(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "r")
    (repo / "README.md").write_text(README)
    assert found(tmp_path)["r"].description == "The actual description of the thing."


def test_a_long_description_is_trimmed_to_200_characters(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "r")
    (repo / "README.md").write_text("# T\n" + "word " * 100 + "\n")
    description = found(tmp_path)["r"].description
    assert len(description) <= 200
    assert description == ("word " * 40).strip()


def test_undecodable_bytes_in_a_readme_do_not_stop_discovery(tmp_path: Path) -> None:
    repo = git_init(tmp_path / "r")
    (repo / "README.md").write_bytes(b"caf\xe9 au lait\n")
    assert found(tmp_path)["r"].description == "caf\ufffd au lait"


def test_a_discovered_manifest_validates_and_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "code"
    for name in ["zeta", "alpha", "Mid dle"]:
        repo = git_init(root / name)
        (repo / "README.md").write_text(f"# {name}\n\n{name}: \"quoted\" #not-a-comment, 'x': [y] \u2028 ü\n")
        (repo / "pyproject.toml").write_text(f'[project]\nname = "{name.replace(" ", "")}"\n')
    repos = discover_repositories(root)
    text = render_manifest(repos)
    assert text.startswith(HEADER)
    manifest, problems = validate_manifest(text, "repos.yaml", allowed_roots=[root], roles=DEFAULT_ROLES)
    assert problems == []
    assert manifest == Manifest(repos)
    assert [repo.name for repo in manifest] == ["alpha", "Mid-dle", "zeta"]


def test_render_sorts_by_name(tmp_path: Path) -> None:
    repos = [Repo(name=name, path=tmp_path / name) for name in ["b", "C", "a"]]
    text = render_manifest(repos)
    assert text.index("name: a") < text.index("name: b") < text.index("name: C")


def test_write_manifest_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "repos.yaml"
    target.write_text("old")
    old_inode = target.stat().st_ino
    repos = [Repo(name="a", path=tmp_path / "a")]
    write_manifest(target, repos)
    assert target.read_text() == render_manifest(repos)
    assert target.stat().st_ino != old_inode
    assert [p.name for p in tmp_path.iterdir()] == ["repos.yaml"]


def test_write_manifest_cleans_up_when_the_rename_fails(tmp_path: Path) -> None:
    target = tmp_path / "repos.yaml"
    target.mkdir()
    (target / "occupied").write_text("")
    with pytest.raises(IsADirectoryError):
        write_manifest(target, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repos.yaml"]

"""`mahavishnu repos ...`: create, check and list the repository manifest.

Exit codes: 0 success, 1 the manifest (or the file to write) has a problem,
2 the settings themselves are unusable, or an argument is (a tag or role no
manifest can contain).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mahavishnu.orchestrator.allowed_roots import (
    RESTART,
    ROOTS,
    add_allowed_root,
    setting_source,
    settings_hint,
)
from mahavishnu.orchestrator.discovery import DEFAULT_ROLE, discover_repositories, write_manifest
from mahavishnu.orchestrator.manifest import (
    Manifest,
    ManifestError,
    Problem,
    Repo,
    load_manifest,
)
from mahavishnu.orchestrator.manifest_model import role_problem, tag_filter_problem
from mahavishnu.orchestrator.manifest_paths import within, worktree_problems
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.errors import ConfigurationError

__all__ = ["app"]

app = typer.Typer(help="Create, check and list the repository manifest (repos.yaml).", no_args_is_help=True)

ReposOption = Annotated[
    Path | None, typer.Option("--repos", help="The manifest to read (default: the repos_file setting).")
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@contextmanager
def _settings_errors() -> Iterator[None]:
    """Bad settings are the operator's to fix: a one-line message, never a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        typer.echo(f"configuration error: {exc.message}", err=True)
        if isinstance(exc, ManifestError):
            _hints(exc.problems)
        raise typer.Exit(2) from None


def _check(settings: MahavishnuSettings) -> tuple[Manifest | None, Sequence[Problem]]:
    try:
        manifest = load_manifest(
            settings.repos_file, allowed_roots=settings.allowed_roots, roles=settings.roles
        )
    except ManifestError as exc:
        return None, exc.problems
    return manifest, ()


@app.command()
def init(
    root: Annotated[
        Path,
        typer.Argument(help="Folder to search for git repositories.", exists=True, file_okay=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: the repos_file setting)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing manifest.")] = False,
    max_depth: Annotated[
        int, typer.Option("--max-depth", min=0, help="How many folders deep to search below ROOT.")
    ] = 3,
    allow_root: Annotated[
        bool | None,
        typer.Option(
            "--allow-root/--no-allow-root",
            help="Add ROOT to allowed_roots in the settings file if outside (default: ask on a terminal).",
        ),
    ] = None,
) -> None:
    """Write a manifest listing every git repository found under ROOT, then validate it."""
    with _settings_errors():
        settings = MahavishnuSettings.load(repos_file=output)
    target = settings.repos_file
    if target.exists() and not force:
        _fail(f"{target} already exists; pass --force to overwrite it", 1)
    role = DEFAULT_ROLE if DEFAULT_ROLE in settings.roles else None
    repos = discover_repositories(root, max_depth, role=role)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # the settings folder, on a first run
        write_manifest(target, repos)
    except OSError as exc:
        _fail(f"cannot write {target}: {exc.strerror or exc}", 1)
    typer.echo(f"wrote {len(repos)} repositories to {target}")
    folder = root.resolve()
    roots = [os.path.realpath(path) for path in settings.allowed_roots]
    if not within(str(folder), roots) and _allow(folder, allow_root):
        with _settings_errors():
            settings = MahavishnuSettings.load(repos_file=output)
    _, problems = _check(settings)
    if problems:
        _report(problems)
        _fail("edit the manifest or the settings, then run `mahavishnu repos validate`", 1)


def _allow(folder: Path, allow_root: bool | None) -> bool:
    """Add `folder` to allowed_roots where that setting comes from, if the user wants it; True when added."""
    source = setting_source(ROOTS)
    if isinstance(source, str):
        typer.echo(f"{folder} is outside allowed_roots, which the {source} environment variable sets")
        return False
    if allow_root is None and sys.stdin.isatty():
        allow_root = typer.confirm(f"{folder} is outside allowed_roots. Add it in {source}?", default=True)
    if not allow_root:
        return False
    with _settings_errors():
        add_allowed_root(source, folder)
    typer.echo(f"added {folder} to allowed_roots in {source}; {RESTART}")
    return True


def _report(problems: Sequence[Problem]) -> None:
    """Each problem on stdout, then where to fix those a setting decides."""
    for problem in problems:
        typer.echo(str(problem))
    _hints(problems)


def _hints(problems: Sequence[Problem]) -> None:
    for setting in sorted({problem.setting for problem in problems if problem.setting}):
        typer.echo(f"hint: {settings_hint(setting)}", err=True)


@app.command()
def validate(
    file: Annotated[
        Path | None, typer.Argument(help="The manifest to check (default: the repos_file setting).")
    ] = None,
    repos: ReposOption = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Fail (exit 1) on warnings too: missing folders, not git work trees."),
    ] = False,
) -> None:
    """Report every problem in the manifest as FILE:LINE: message.

    Folders that are missing or not git work trees are warnings (a server still
    serves the rest), errors with --strict.
    """
    if file is not None and repos is not None and file != repos:
        raise typer.BadParameter("give the manifest as FILE or --repos, not both")
    with _settings_errors():
        settings = MahavishnuSettings.load(repos_file=file or repos)
    manifest, problems = _check(settings)
    _report(problems)
    if manifest is None:
        raise typer.Exit(1)
    warnings = worktree_problems(manifest, str(settings.repos_file))
    for warning in warnings:
        label = "" if strict else "warning: "
        typer.echo(str(Problem(warning.file, warning.line, label + warning.message)))
    if strict and warnings:
        raise typer.Exit(1)
    count = len(warnings)
    noted = f", {count} warning{'s' if count != 1 else ''} (--strict makes them errors)" if count else ""
    typer.echo(f"OK: {len(manifest)} repositories{noted}")


def _tag_filter(value: str | None) -> str | None:
    """A tag no manifest can contain is a typo: say so, rather than "no repositories match"."""
    if value is not None and (problem := tag_filter_problem(value)) is not None:
        raise typer.BadParameter(problem)
    return value


TagOption = Annotated[
    str | None, typer.Option("--tag", help="Only repositories with this tag.", callback=_tag_filter)
]


@app.command("list")
def list_repos(
    tag: TagOption = None,
    role: Annotated[str | None, typer.Option(help="Only repositories with this role.")] = None,
    query: Annotated[
        str | None,
        typer.Option(help="Only repositories whose name, nickname, package or description contain this."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    repos: ReposOption = None,
) -> None:
    """List the repositories of the manifest."""
    with _settings_errors():
        settings = MahavishnuSettings.load(repos_file=repos)
        if role is not None and (problem := role_problem(role, settings.roles)) is not None:
            raise typer.BadParameter(problem, param_hint="'--role'")
        manifest = load_manifest(
            settings.repos_file, allowed_roots=settings.allowed_roots, roles=settings.roles
        )
    selected = manifest.filter(tag=tag, role=role, query=query)
    if as_json:
        typer.echo(json.dumps([repo.model_dump(mode="json") for repo in selected], indent=2))
    elif selected:
        Console().print(_table(selected))
    else:
        typer.echo("no repositories match" if len(manifest) else "the manifest lists no repositories")


def _table(repos: Sequence[Repo]) -> Table:
    table = Table("name", "nickname", "role", "tags", "path")
    table.columns[-1].overflow = "fold"
    for repo in repos:
        path = Text(str(repo.path))  # a Text, so brackets in a path are not read as markup
        table.add_row(repo.name, repo.nickname or "", repo.role or "", ", ".join(repo.tags), path)
    return table

"""`mahavishnu --version` answers without a command and names the installed version."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from mahavishnu.cli import app


def test_version_prints_the_installed_version_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"mahavishnu {version('mahavishnu')}"


def test_version_wins_over_a_command() -> None:
    """Eager, as `git --version`: it answers even when a command follows."""
    result = CliRunner().invoke(app, ["--version", "workflows", "list"])
    assert result.exit_code == 0
    assert result.output.startswith("mahavishnu ")

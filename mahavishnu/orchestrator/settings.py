"""Mahavishnu's own settings: the platform's, plus the repository manifest."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mahavishnu.platform.settings import PlatformSettings

__all__ = ["DEFAULT_ROLES", "MahavishnuSettings"]

DEFAULT_ROLES: tuple[str, ...] = (
    "app",
    "asset",
    "builder",
    "diviner",
    "extension",
    "foundation",
    "inspector",
    "library",
    "manager",
    "orchestrator",
    "resolver",
    "service",
    "soothsayer",
    "tool",
    "visualizer",
)


class MahavishnuSettings(PlatformSettings):
    repos_file: Path = Path("repos.yaml")
    """The repository manifest. Missing means an empty manifest (with a hint in the log)."""
    allowed_roots: list[Path] = Field(default_factory=lambda: [Path.home()])
    """Every repository path must resolve (symlinks followed) inside one of these folders."""
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLES))
    manifest_poll_seconds: float = Field(default=1.0, gt=0)
    """How often the manifest file is checked for changes."""

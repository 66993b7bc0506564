"""Echo's settings: the platform's, under its own name, prefix, port and migration tree."""

from __future__ import annotations

from pathlib import Path

from mahavishnu.platform import MigrationSet, PlatformSettings

MIGRATIONS = MigrationSet(
    location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_echo",
    title="Echo",
)


class EchoSettings(
    PlatformSettings,
    service_name="echo",
    env_prefix="ECHO_",
    default_port=8690,
    migrations=MIGRATIONS,
):
    greeting: str = "echo"
    """Put before every echoed text: a setting of its own, read as ECHO_GREETING."""

"""Mahavishnu's own settings: the platform's, plus the repository manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr

from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition, builtin_workflows
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

    # --- storage ----------------------------------------------------------
    data_dir: Path = Path("var")
    """Where the embedded SQLite database and the run logs live."""
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("POSTGRES_URL", "MAHAVISHNU_DATABASE_URL", "database_url")
    )
    """PostgreSQL (or SQLite) URL; unset means SQLite at DATA_DIR/mahavishnu.db."""
    database_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """PostgreSQL schema to use (several deployments can share one database)."""
    db_auto_upgrade: bool = True
    """Bring an older schema to the current one at start-up (a newer one is always refused)."""

    # --- workflows ----------------------------------------------------------
    workflows: dict[str, WorkflowDefinition] = Field(default_factory=dict)
    """Operator-defined workflows, by name; they may replace the built-in ones."""
    agent_command: list[str] = Field(default_factory=lambda: ["claude", "-p"], min_length=1)
    """The agent CLI the built-in `agent` workflow runs, before the prompt argument."""
    max_concurrent_runs: int = Field(default=10, gt=0)
    kill_grace_seconds: float = Field(default=5.0, ge=0)
    """After a timeout or cancel: time between SIGTERM and SIGKILL to the process group."""
    output_tail_bytes: int = Field(default=8192, gt=0)
    log_max_bytes: int = Field(default=1024 * 1024, gt=0)
    circuit_failure_threshold: int = Field(default=5, gt=0)
    circuit_cooldown_seconds: float = Field(default=60.0, ge=0)
    heal_policy: Literal["requeue", "fail"] = "requeue"
    """What happens to runs left `running` by a process that died."""
    lease_seconds: float = Field(default=15.0, gt=0)
    engine_poll_seconds: float = Field(default=0.5, gt=0)

    # --- backups --------------------------------------------------------------
    backup_dir: Path | None = None
    """Local folder for backup archives; unset means DATA_DIR/backups."""
    backup_s3_bucket: str | None = None
    """Store archives in this S3 bucket instead (credentials from the usual AWS variables)."""
    backup_s3_prefix: str = "mahavishnu/"
    backup_s3_endpoint_url: str | None = None
    """For S3-compatible stores (MinIO, Ceph, ...)."""
    backup_s3_region: str | None = None
    backup_encryption_key: SecretStr | None = None
    """A Fernet key (`mahavishnu backup keygen`); when set, archives are encrypted."""
    backup_keep_daily: int = Field(default=30, ge=0)
    backup_keep_weekly: int = Field(default=12, ge=0)
    backup_keep_monthly: int = Field(default=6, ge=0)
    backup_max_age_hours: float = Field(default=26.0, gt=0)
    """Older than this, the last good backup counts as stale (readiness, alerts)."""

    @property
    def effective_backup_dir(self) -> Path:
        return (self.backup_dir or self.data_dir / "backups").resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mahavishnu.db').resolve()}"

    def workflow_definitions(self) -> dict[str, WorkflowDefinition]:
        return {**builtin_workflows(self.agent_command), **self.workflows}

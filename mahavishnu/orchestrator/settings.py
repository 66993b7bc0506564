"""Mahavishnu's own settings: the platform's, plus the repository manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition, builtin_workflows
from mahavishnu.platform.settings import ROOT_MIGRATIONS, PlatformSettings

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


class MahavishnuSettings(
    PlatformSettings,
    service_name="mahavishnu",
    env_prefix="MAHAVISHNU_",
    default_port=8680,
    migrations=ROOT_MIGRATIONS,
):
    env_file_template = "{env}.yaml"
    """`<env>.yaml` beside the settings file, as before services had files of their own:
    deployments have them."""

    repos_file: Path = Path("repos.yaml")
    """The repository manifest; unset means `repos.yaml` beside the settings file (so every
    working folder sees one manifest). Missing means an empty manifest (with a hint in the log)."""
    allowed_roots: list[Path] = Field(default_factory=lambda: [Path.home()])
    """Every repository path must resolve (symlinks followed) inside one of these folders."""
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLES))
    manifest_poll_seconds: float = Field(default=1.0, gt=0)
    """How often the manifest file is checked for changes."""

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

    @model_validator(mode="before")
    @classmethod
    def _manifest_beside_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("repos_file") is None:
            return {**data, "repos_file": cls.settings_file().parent / "repos.yaml"}
        return data

    def workflow_definitions(self) -> dict[str, WorkflowDefinition]:
        return {**builtin_workflows(self.agent_command), **self.workflows}

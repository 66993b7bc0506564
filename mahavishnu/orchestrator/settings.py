"""Mahavishnu's own settings: the platform's, plus the repository manifest, the workflows, where
(and as whom) it sends their outcomes to Akosha, and its agent runs to Session-Buddy."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition, builtin_workflows
from mahavishnu.platform.settings import ROOT_MIGRATIONS, PlatformSettings, peer_base_url

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


SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""What Akosha shows as where an outcome came from: a host-name-like label."""


def _host_name() -> str:
    """This machine's name as a source name; 'mahavishnu' when it does not make one."""
    name = socket.gethostname().lower()
    return name if SOURCE_NAME.match(name) else "mahavishnu"


class MahavishnuSettings(
    PlatformSettings,
    service_name="mahavishnu",
    env_prefix="MAHAVISHNU_",
    default_port=8680,
    migrations=ROOT_MIGRATIONS,
    shared_env={"akosha_token": "AKOSHA_API_TOKEN"},
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
    engine: Literal["local", "temporal"] = "local"
    """Who executes workflows: `local` (this process's subprocesses, on this host) or `temporal`
    (a Temporal cluster, with `mahavishnu worker` on each build host; see "Scaling out")."""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue_prefix: str = Field(
        default="mahavishnu", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
    )
    temporal_batch_size: int = Field(default=25, ge=1, le=200)
    """Runs per Temporal activity (each activity costs Temporal 5-30 ms; a batch pays once)."""
    temporal_max_batches: int = Field(default=32, ge=1, le=1000)
    """Batches of one workflow in flight at once (Temporal allows 2,000 pending activities)."""
    temporal_heartbeat_seconds: float = Field(default=10.0, gt=0)
    """A batch whose worker is silent this long is retried on another worker of its host."""
    temporal_host_timeout_seconds: float = Field(default=300.0, gt=0)
    """Runs no worker of their host takes within this long fail with "host unavailable"."""
    temporal_serve_runs: bool = True
    """This process also executes runs of repositories without a `host` (one process does all)."""
    temporal_reconcile_seconds: float = Field(default=15.0, gt=0)
    """How often open workflows are checked against Temporal and restarted if it lost them."""
    temporal_api_key: SecretStr | None = None
    """A Temporal Cloud API key, sent as a bearer token with every call; turns TLS on."""
    temporal_tls: bool | None = None
    """TLS to the Temporal frontend; unset: on when an API key or a client certificate is set."""
    temporal_tls_ca_file: Path | None = None
    """PEM of the CA that signed the frontend's certificate (unset: the system's roots)."""
    temporal_tls_cert_file: Path | None = None
    """PEM of a client certificate (mTLS, as a Temporal Cloud namespace may require), with
    `temporal_tls_key_file`: both or neither."""
    temporal_tls_key_file: Path | None = None
    temporal_tls_server_name: str | None = None
    """The name the frontend's certificate must carry, when it is not the address's host."""

    # --- Akosha ----------------------------------------------------------------
    akosha_url: str | None = None
    """Akosha's base URL (e.g. http://akosha:8682): each closed workflow's per-repository outcomes
    are sent to its `/ingest/outcomes`. Unset: nothing is sent (closes are still queued, one row
    per workflow, so setting it later sends what closed meanwhile)."""
    akosha_token: SecretStr | None = None
    """The bearer token Akosha accepts (AKOSHA_API_TOKEN, shared with Akosha's deployment);
    required in production when akosha_url is set."""
    source_name: str = Field(default_factory=_host_name, pattern=SOURCE_NAME.pattern)
    """This Mahavishnu's name in Akosha (letters, digits, '.', '_', '-'; up to 100): keep it
    stable, it is part of every outcome's identity there."""
    outcome_batch_size: int = Field(default=500, ge=1, le=5000)
    """Outcomes (repository runs) sent per request; a workflow's are never split, so one over
    this goes alone."""

    # --- Session-Buddy ----------------------------------------------------------
    session_buddy_url: str | None = None
    """Session-Buddy's base URL (e.g. http://session-buddy:8678): each run of the `agent`
    workflow is written there, through its MCP tools at `/mcp`, as a session (project: the
    repository; goal: the prompt) holding the prompt and the output tail as memories. Unset:
    nothing is written (finished agent runs are still queued, one row per run, so setting it
    later writes what ran meanwhile)."""
    session_buddy_token: SecretStr | None = None
    """A Session-Buddy token for Mahavishnu (`mahavishnu token create --service session-buddy
    --role operator --tenant TEAM --sub mahavishnu`): its tenant owns the sessions and memories.
    Required in production when session_buddy_url is set."""

    @field_validator("akosha_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else peer_base_url(value, credentials_in="AKOSHA_API_TOKEN")

    @field_validator("session_buddy_url")
    @classmethod
    def _session_buddy_url(cls, value: str | None) -> str | None:
        return (
            None if value is None else peer_base_url(value, credentials_in="MAHAVISHNU_SESSION_BUDDY_TOKEN")
        )

    def check_secure(self, *, listening: bool = True) -> list[str]:
        problems = super().check_secure(listening=listening)
        if self.env == "production" and self.akosha_url is not None and self.akosha_token is None:
            problems.append(
                "production mode sends outcomes to Akosha (MAHAVISHNU_AKOSHA_URL) only with a "
                "token: set AKOSHA_API_TOKEN"
            )
        if (
            self.env == "production"
            and self.session_buddy_url is not None
            and self.session_buddy_token is None
        ):
            problems.append(
                "production mode writes agent runs to Session-Buddy (MAHAVISHNU_SESSION_BUDDY_URL) "
                "only with a token: set MAHAVISHNU_SESSION_BUDDY_TOKEN"
            )
        return problems

    @model_validator(mode="after")
    def _temporal_tls_complete(self) -> MahavishnuSettings:
        if (self.temporal_tls_cert_file is None) != (self.temporal_tls_key_file is None):
            raise ValueError(
                "temporal_tls_cert_file and temporal_tls_key_file go together: set both or neither"
            )
        if self.temporal_tls is False and (
            self.temporal_api_key is not None or self.temporal_tls_cert_file is not None
        ):
            raise ValueError(
                "a Temporal API key or client certificate is only sent over TLS: drop temporal_tls=false"
            )
        return self

    @property
    def temporal_tls_on(self) -> bool:
        if self.temporal_tls is not None:
            return self.temporal_tls
        return self.temporal_api_key is not None or self.temporal_tls_cert_file is not None

    @model_validator(mode="before")
    @classmethod
    def _manifest_beside_settings(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("repos_file") is None:
            return {**data, "repos_file": cls.settings_file().parent / "repos.yaml"}
        return data

    def workflow_definitions(self) -> dict[str, WorkflowDefinition]:
        return {**builtin_workflows(self.agent_command), **self.workflows}

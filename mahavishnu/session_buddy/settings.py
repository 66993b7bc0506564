"""Session-Buddy's settings: the platform's, plus the memory store's keys, model and limits,
and where (and as whom) it pushes memories to Akosha."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from mahavishnu.platform import MigrationSet, PlatformSettings
from mahavishnu.platform.settings import peer_base_url

__all__ = ["MIGRATIONS", "SessionBuddySettings"]

MIGRATIONS = MigrationSet(
    location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_session_buddy",
    title="Session-Buddy",
)

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
"""What Akosha shows as where a memory came from: a host-name-like label."""


def _host_name() -> str:
    """This machine's name as a source name; 'session-buddy' when it does not make one."""
    name = socket.gethostname().lower()
    return name if SOURCE_NAME.match(name) else "session-buddy"


class SessionBuddySettings(
    PlatformSettings,
    service_name="session-buddy",
    env_prefix="SESSION_BUDDY_",
    default_port=8678,
    migrations=MIGRATIONS,
    shared_env={
        "encryption_key": "SESSION_ENCRYPTION_KEY",
        "worker_count": "WORKER_COUNT",
        "embedding_model": "EMBEDDING_MODEL",
        "akosha_token": "AKOSHA_API_TOKEN",
    },
):
    encryption_key: SecretStr | None = None
    """Key-encryption keys, newest first, comma-separated (base64url of 32 bytes each; make one
    with `mahavishnu memories keygen`). Unset in development: a key is made once in the data
    folder, with a warning. Production refuses to start without it."""
    embedding_model: str = "all-minilm-l6-v2-int8"
    """The sentence-embedding model for search by meaning; it runs locally, offline:
    all-minilm-l6-v2-int8 (all-MiniLM-L6-v2 with int8 arithmetic, made once from the packaged
    file) or all-minilm-l6-v2 (as packaged, fp32: half the speed, the same quality)."""
    model_cache_dir: Path | None = None
    """Where a model made from a packaged one is kept (default: `models/` in the data folder)."""
    worker_count: int = Field(default=2, ge=1, le=64)
    """Background workers: embedding, pushing to Akosha, retention."""
    max_content_chars: int = Field(default=16_000, ge=1, le=1_000_000)
    """The longest memory, checkpoint or hand-off text accepted."""
    max_tags: int = Field(default=32, ge=0, le=256)
    purge_after_days: int = Field(default=30, ge=0, le=3650)
    """How long a deleted memory's encrypted rows stay (for an undo or an audit) before they
    are purged for good; its search entries go at once."""

    retention_interval_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    """How often retention purges by itself (`run_retention` purges at once)."""

    akosha_url: str | None = None
    """Akosha's base URL (e.g. http://akosha:8682): every new memory version and deletion is
    pushed to its ingest endpoint. Unset: nothing is pushed, but the outbox keeps recording, so
    setting it later sends everything written meanwhile."""
    akosha_token: SecretStr | None = None
    """The bearer token Akosha accepts (AKOSHA_API_TOKEN, shared with Akosha's deployment);
    required in production when akosha_url is set."""
    source_name: str = Field(default_factory=_host_name, pattern=SOURCE_NAME.pattern)
    """This Session-Buddy's name in Akosha (letters, digits, '.', '_', '-'; up to 100): keep it
    stable (a container's host name is not), it is part of every record's identity there."""
    outbox_batch_size: int = Field(default=200, ge=1, le=5000)
    """Outbox entries pushed to Akosha per request (fewer when their memories are large)."""

    @field_validator("akosha_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else peer_base_url(value, credentials_in="AKOSHA_API_TOKEN")

    @property
    def effective_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    def check_secure(self, *, listening: bool = True) -> list[str]:
        problems = super().check_secure(listening=listening)
        if self.env == "production" and self.encryption_key is None:
            problems.append(
                "production mode needs SESSION_ENCRYPTION_KEY (memories are encrypted at rest); "
                "make one with: mahavishnu memories keygen"
            )
        if self.env == "production" and self.akosha_url is not None and self.akosha_token is None:
            problems.append(
                "production mode pushes to Akosha (SESSION_BUDDY_AKOSHA_URL) only with a token: "
                "set AKOSHA_API_TOKEN"
            )
        return problems

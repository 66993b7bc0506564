"""Session-Buddy's settings: the platform's, plus the memory store's keys, model and limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from mahavishnu.platform import MigrationSet, PlatformSettings

__all__ = ["MIGRATIONS", "SessionBuddySettings"]

MIGRATIONS = MigrationSet(
    location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_session_buddy",
    title="Session-Buddy",
)


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
    },
):
    encryption_key: SecretStr | None = None
    """Key-encryption keys, newest first, comma-separated (base64url of 32 bytes each; make one
    with `mahavishnu memories keygen`). Unset in development: a key is made once in the data
    folder, with a warning. Production refuses to start without it."""
    embedding_model: str = "all-minilm-l6-v2"
    """The sentence-embedding model for search by meaning; it runs locally, offline."""
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

    def check_secure(self, *, listening: bool = True) -> list[str]:
        problems = super().check_secure(listening=listening)
        if self.env == "production" and self.encryption_key is None:
            problems.append(
                "production mode needs SESSION_ENCRYPTION_KEY (memories are encrypted at rest); "
                "make one with: mahavishnu memories keygen"
            )
        return problems

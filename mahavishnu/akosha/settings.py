"""Akosha's settings: the platform's, plus who may push to it and the key its store is sealed with."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from mahavishnu.platform import MigrationSet, PlatformSettings
from mahavishnu.platform.settings import MIN_SECRET_BYTES

__all__ = ["MIGRATIONS", "AkoshaSettings"]

MIGRATIONS = MigrationSet(
    location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_akosha",
    title="Akosha",
)


class AkoshaSettings(
    PlatformSettings,
    service_name="akosha",
    env_prefix="AKOSHA_",
    default_port=8682,
    migrations=MIGRATIONS,
    shared_env={"embedding_model": "EMBEDDING_MODEL"},
):
    api_token: SecretStr | None = None
    """The bearer token senders push with (AKOSHA_API_TOKEN, the same value Session-Buddy's
    deployment sets); at least 32 characters. Production refuses to start without it."""
    encryption_key: SecretStr | None = None
    """Key-encryption keys, newest first, comma-separated (urlsafe base64 of 32 bytes each).
    Unset in development: a key is made once in the data folder, with a warning. Production
    refuses to start without it."""
    max_batch_records: int = Field(default=5000, ge=1, le=50_000)
    """The most records one ingest request may carry (its bytes are bounded by max_body_bytes)."""
    embedding_model: str = "all-minilm-l6-v2-int8"
    """The sentence-embedding model `search_all_systems` finds by meaning with (as Session-Buddy's
    EMBEDDING_MODEL: it runs locally, offline). Unknown: search by keyword only, a health check
    says why."""
    model_cache_dir: Path | None = None
    """Where a model made from a packaged one is kept (default: `models/` in the data folder)."""

    hot_days: float = Field(default=30.0, gt=0)
    """A record stays in the hot tier (float32 vectors in memory) while it was written or last
    found by a reader within this many days."""
    warm_days: float = Field(default=180.0, gt=0)
    """... in the warm tier (int8 vectors in memory) within this many days; cold (sealed Parquet
    segments on disk) after. Must exceed hot_days."""
    aging_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    """How often an aging run moves vectors between tiers."""
    cold_dir: Path | None = None
    """Where the cold tier's segment files go (default: `cold/` in the data folder)."""

    @model_validator(mode="after")
    def _warm_after_hot(self) -> AkoshaSettings:
        if self.warm_days <= self.hot_days:
            raise ValueError(
                f"AKOSHA_WARM_DAYS ({self.warm_days:g}) must be more than AKOSHA_HOT_DAYS ({self.hot_days:g})"
            )
        return self

    @property
    def effective_cold_dir(self) -> Path:
        return (self.cold_dir or self.data_dir / "cold").resolve()

    @property
    def effective_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    def check_secure(self, *, listening: bool = True) -> list[str]:
        problems = super().check_secure(listening=listening)
        token = self.api_token.get_secret_value() if self.api_token is not None else None
        if token is not None and len(token.encode()) < MIN_SECRET_BYTES:
            problems.append(
                f"AKOSHA_API_TOKEN is shorter than {MIN_SECRET_BYTES} bytes; generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if self.env == "production" and token is None:
            problems.append("production mode needs AKOSHA_API_TOKEN (the token senders push with)")
        if self.env == "production" and self.encryption_key is None:
            problems.append(
                "production mode needs AKOSHA_ENCRYPTION_KEY (what Akosha receives is encrypted at "
                "rest); make one with: python3 -c 'from mahavishnu.platform.crypto import "
                "generate_key; print(generate_key())'"
            )
        return problems

"""Layered settings shared by every service on the platform.

Precedence, lowest first: field defaults → the service's settings file (`--config` /
`<PREFIX>CONFIG`, else `$XDG_CONFIG_HOME/mahavishnu/<service>.yaml`; see `settings_sources`)
→ the environment's file beside it (when `<PREFIX>ENV` is set) → the shared deployment names
(`POSTGRES_URL`, `REDIS_URL`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `RATE_LIMIT_*`, `POOL_*_SIZE`) →
the service's prefixed environment variables → explicit keyword arguments (the CLI's flags).

A service names itself once, in its class statement, and everything that
differs between services follows from that: the prefix it reads, the port it
listens on, its token audience, its settings file, its SQLite file, its metric prefix:

    class SessionBuddySettings(
        PlatformSettings, service_name="session-buddy", env_prefix="SESSION_BUDDY_", default_port=8678
    ): ...
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from mahavishnu.platform.errors import ConfigurationError, InsecureConfigurationError
from mahavishnu.platform.settings_migrations import IDENTIFIER, ROOT_MIGRATIONS, MigrationSet
from mahavishnu.platform.settings_sources import (
    SHARED_ENV,
    SharedEnvSource,
    data_home,
    legacy_settings_notice,
    settings_file_for,
    settings_file_source,
)

__all__ = [
    "MIN_SECRET_BYTES",
    "ROOT_MIGRATIONS",
    "SHARED_ENV",
    "MigrationSet",
    "PlatformSettings",
    "is_loopback",
    "mask_url",
    "peer_base_url",
    "settings_file_for",
]

MIN_SECRET_BYTES = 32
Environment = Literal["development", "test", "staging", "production"]
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_ENV_PREFIX = re.compile(r"^[A-Z][A-Z0-9_]*_$")


class PlatformSettings(BaseSettings):
    """Settings every service needs: listening, auth, limits, storage, observability.

    A service subclasses it with its identity as class keywords (see `__init_subclass__`).
    The base class itself answers as Mahavishnu, the first service, so the platform's tests
    and tools that build a bare `PlatformSettings` keep speaking to it.
    """

    service_name: ClassVar[str] = "mahavishnu"
    env_prefix: ClassVar[str] = "MAHAVISHNU_"
    default_port: ClassVar[int] = 8680
    migrations: ClassVar[MigrationSet | None] = ROOT_MIGRATIONS
    shared_env: ClassVar[Mapping[str, str]] = SHARED_ENV
    env_file_template: ClassVar[str] = "{service}.{env}.yaml"
    """The environment's YAML file, beside the base one; per service, so two services sharing
    a settings folder never read each other's keys (unknown keys are refused)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        validate_default=True,
    )

    def __init_subclass__(
        cls,
        *,
        service_name: str | None = None,
        default_port: int | None = None,
        migrations: MigrationSet | None = None,
        shared_env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Take a service's identity from its class statement.

        `env_prefix` is pydantic-settings' own class keyword: it arrives in `model_config`
        (the base class leaves it unset there), and is copied to the class variable.
        A direct subclass must name itself (service name, prefix, port): inheriting the base's
        would make a new service read `MAHAVISHNU_*` and listen on 8680 without a word. A
        subclass of a service's settings (a test's, say) inherits what it does not repeat.
        `migrations` default to none, and `shared_env` adds to the names the parent reads.
        """
        super().__init_subclass__(**kwargs)
        env_prefix = cls.model_config.get("env_prefix") or None
        direct = PlatformSettings in cls.__bases__
        if direct and (service_name is None or env_prefix is None or default_port is None):
            raise TypeError(
                f"{cls.__name__} must name its service: class {cls.__name__}(PlatformSettings, "
                'service_name="...", env_prefix="..._", default_port=...)'
            )
        if service_name is not None:
            if not _SERVICE_NAME.match(service_name):
                raise TypeError(f"service_name {service_name!r}: lowercase letters, digits and '-'")
            cls.service_name = service_name
        if env_prefix is not None:
            if not _ENV_PREFIX.match(env_prefix):
                raise TypeError(f"env_prefix {env_prefix!r}: upper case, ending in '_'")
            cls.env_prefix = env_prefix
        if default_port is not None:
            cls.default_port = default_port
        if migrations is not None or direct:
            cls.migrations = migrations
        if shared_env is not None:
            cls.shared_env = MappingProxyType({**cls.shared_env, **shared_env})

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Once the fields exist: a shared name for a setting that is not there is a typo."""
        super().__pydantic_init_subclass__(**kwargs)
        unknown = sorted(set(cls.shared_env) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__}.shared_env names unknown settings: {', '.join(unknown)}")

    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=default_port, ge=0, le=65535)
    """Unset means the service's `default_port` (filled in by `_service_defaults`)."""
    public_url: str | None = None
    """External URL of the service (for OAuth resource metadata); derived from host/port when unset."""

    # --- auth -----------------------------------------------------------
    auth_secret: SecretStr | None = None
    """HS256 signing secret; at least 32 bytes. Turns authentication on."""
    auth_previous_secret: SecretStr | None = None
    """During a rotation: tokens signed with the old secret stay valid until they expire."""
    auth_public_key_file: Path | None = None
    """PEM public key for RS256 tokens. Turns authentication on."""
    auth_audience: str | None = Field(default=None, min_length=1)
    """The `aud` tokens must carry; unset means the service name, so a token minted for one
    service is refused by the others even when they share a secret. Give every service the same
    value to let one token serve them all."""
    auth_issuer: str = "mahavishnu"
    """The `iss` tokens must carry: who mints them (`mahavishnu token create`), the same for every
    service; which service a token is for is its audience."""
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew tolerated on exp/nbf/iat; bounded so a token cannot live much past its expiry."""
    auth_max_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    # --- rate limiting ----------------------------------------------------
    rate_limit_enabled: bool = True
    rate_limit_per_minute: int = Field(default=60, gt=0)
    rate_limit_per_hour: int = Field(default=1000, gt=0)
    rate_limit_burst: int = Field(default=20, gt=0)
    """Requests allowed within any one second."""
    rate_limit_fail_open: bool = True
    """When the Redis backend is unreachable: True lets requests through, False refuses them (503)."""
    redis_url: SecretStr | None = None
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or CIDR blocks whose X-Forwarded-For header is believed."""

    # --- HTTP transport ---------------------------------------------------
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_json_depth: int = Field(default=64, ge=2, le=128)
    """Deepest nesting of arrays and objects a request body may have; deeper bodies are refused
    before parsing, so no parser (ours, the SDK's, pydantic's) recurses on a hostile document."""
    dns_rebinding_protection: bool = True
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host header values accepted besides loopback (needed behind a proxy or on a real hostname)."""
    allowed_origins: list[str] = Field(default_factory=list)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    allow_unauthenticated_network: bool = False
    """Listen beyond loopback with authentication off. Anyone who reaches the port gets the admin
    role, so this is refused unless set explicitly, and start-up logs a warning when it is."""
    health_details_public: bool = False
    """With authentication on, /health shows component details (paths, backends, problems) only
    to a valid token; True shows them to everyone."""

    # --- storage ----------------------------------------------------------
    data_dir: Path = Field(default_factory=data_home)
    """Where the embedded SQLite database (`<service>.db`) and other local files live; by default
    `$XDG_DATA_HOME/mahavishnu`, so every working folder sees the same data."""
    database_url: str | None = None
    """PostgreSQL (or SQLite) URL; unset means SQLite at DATA_DIR/<service>.db. Services may share
    one PostgreSQL database and schema: each migrates its own tables under its own version table."""
    database_schema: str | None = Field(default=None, pattern=IDENTIFIER.pattern)
    """PostgreSQL schema to use (several deployments can share one database)."""
    db_auto_upgrade: bool = True
    """Bring an older schema to the current one at start-up (a newer one is always refused)."""
    db_pool_min_size: int = Field(default=10, ge=1)
    """PostgreSQL connections each process keeps open."""
    db_pool_max_size: int = Field(default=20, ge=1)
    """PostgreSQL connections each process may open at busy times."""

    # --- backups (every service's; `mahavishnu backup --service NAME`) ---------
    backup_dir: Path | None = None
    """Local folder for backup archives; unset means DATA_DIR/backups."""
    backup_s3_bucket: str | None = None
    """Store archives in this S3 bucket instead (credentials from the usual AWS variables)."""
    backup_s3_prefix: str = "mahavishnu/"
    """Archive names start with the service's name, so services may share one prefix (and one folder)."""
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

    # --- observability ----------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter_otlp_endpoint: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _service_defaults(cls, data: Any) -> Any:
        """A field default is one value for every subclass, so the service's port goes in here."""
        if isinstance(data, dict) and data.get("port") is None:
            return {**data, "port": cls.default_port}
        return data

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.db_pool_max_size < self.db_pool_min_size:
            raise ValueError("db_pool_max_size must be at least db_pool_min_size")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {entry!r} is not an address or CIDR block") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then the service's own prefix, then the shared names, then the YAML files.

        The prefix is handed to the environment source here rather than set in `model_config`,
        so it follows the class variable a service sets, not the base class's.
        """
        prefixed = EnvSettingsSource(settings_cls, env_prefix=cls.env_prefix)
        shared = SharedEnvSource(settings_cls, cls.shared_env)
        files = [settings_file_source(settings_cls, path) for path in cls.config_files()]
        return (init_settings, prefixed, shared, *reversed(files))

    @classmethod
    def settings_file(cls) -> Path:
        """This service's settings file, absolute, present or not (see `settings_file_for`)."""
        return settings_file_for(cls.service_name, cls.env_prefix)

    @classmethod
    def config_files(cls) -> list[Path]:
        """The YAML files this process reads, lowest precedence first (missing ones skipped)."""
        base = cls.settings_file()
        files = [base]
        env = os.environ.get(f"{cls.env_prefix}ENV")
        if env:
            files.append(base.parent / cls.env_file_template.format(service=cls.service_name, env=env))
        return [f for f in files if f.is_file()]

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each setting's canonical environment variable: its shared deployment name when it has
        one, else the prefixed name (which works for every setting)."""
        return {
            name: cls.shared_env.get(name) or f"{cls.env_prefix}{name.upper()}" for name in cls.model_fields
        }

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Build settings, turning validation failures into one readable ConfigurationError."""
        import logging

        from pydantic import ValidationError

        notice = legacy_settings_notice(cls.service_name, cls.settings_file())
        if notice is not None:
            logging.getLogger("mahavishnu.settings").warning(notice)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(f"invalid settings: {problems}") from None

    # --- derived ----------------------------------------------------------
    @property
    def auth_enabled(self) -> bool:
        return self.auth_secret is not None or self.auth_public_key_file is not None

    @property
    def token_audience(self) -> str:
        """The `aud` this service's tokens carry and its verifier requires."""
        return self.auth_audience or self.service_name

    @property
    def metric_prefix(self) -> str:
        """`session-buddy` → `session_buddy`: Prometheus names allow no dash."""
        return self.service_name.replace("-", "_")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / f'{self.service_name}.db').resolve()}"

    @property
    def effective_backup_dir(self) -> Path:
        return (self.backup_dir or self.data_dir / "backups").resolve()

    @property
    def resource_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check_secure(self, *, listening: bool = True) -> list[str]:
        """Reasons this configuration must not start; warnings are not included.

        `listening` is False for stdio, which opens no socket, so where it would bind is moot.
        """
        problems: list[str] = []
        if (
            self.auth_secret is not None
            and len(self.auth_secret.get_secret_value().encode()) < MIN_SECRET_BYTES
        ):
            problems.append(
                f"{self.env_prefix}AUTH_SECRET is shorter than {MIN_SECRET_BYTES} bytes; "
                "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if self.env == "production" and self.auth_secret is None and self.auth_public_key_file is None:
            problems.append(
                f"production mode needs {self.env_prefix}AUTH_SECRET (at least {MIN_SECRET_BYTES} bytes) "
                "or an RS256 public key"
            )
        if listening and self._open_to_network() and not self.allow_unauthenticated_network:
            problems.append(  # said after "refusing to start:", so it does not refuse again
                f"listening on {self.host} without authentication would make anyone who reaches the "
                f"port an admin; set {self.env_prefix}AUTH_SECRET or bind to 127.0.0.1 "
                f"(or accept the risk with {self.env_prefix}ALLOW_UNAUTHENTICATED_NETWORK=true)"
            )
        return problems

    def ensure_secure(self, *, listening: bool = True) -> None:
        problems = self.check_secure(listening=listening)
        if problems:
            raise InsecureConfigurationError(problems[0])

    def insecure_warnings(self, *, listening: bool = True) -> list[str]:
        """Risks an operator chose explicitly; start-up logs each one as a warning."""
        if listening and self._open_to_network() and self.allow_unauthenticated_network:
            return [
                f"listening on {self.host} WITHOUT authentication "
                f"({self.env_prefix}ALLOW_UNAUTHENTICATED_NETWORK=true): anyone who can reach "
                "this port has the admin role"
            ]
        return []

    def _open_to_network(self) -> bool:
        """Auth off and a non-loopback address: every reachable machine would be the admin."""
        return not self.auth_enabled and not is_loopback(self.host)

    def redacted(self) -> dict[str, Any]:
        """The effective settings with secrets masked, safe to print or log."""
        data = self.model_dump(mode="json")
        for name, value in data.items():
            if isinstance(getattr(self, name), SecretStr) and value is not None:
                data[name] = "**********"
            elif isinstance(value, str) and "://" in value:
                data[name] = mask_url(value)
        if self.redis_url is not None:
            data["redis_url"] = mask_url(self.redis_url.get_secret_value())
        return data


def is_loopback(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def peer_base_url(value: str, *, credentials_in: str) -> str:
    """A peer service's base URL as a setting names it (e.g. http://akosha:8682), without its
    trailing slash; ValueError says what is wrong, for the setting's validator to report."""
    parts = urlsplit(value)
    parts.port  # noqa: B018 - raises ValueError for a port out of range
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("an http(s) URL such as http://akosha:8682, without query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"no credentials in the URL: the token goes in {credentials_in}")
    return value.rstrip("/")


def mask_url(url: str) -> str:
    """Hide the password of a URL such as redis://user:pw@host/0."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:****@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))

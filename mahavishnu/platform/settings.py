"""Layered settings shared by every service on the platform.

Precedence, lowest first: field defaults → the base YAML file
(`settings/<service>.yaml`, or the file `<PREFIX>CONFIG` names) → the
environment's YAML file (`settings/<env>.yaml` when `<PREFIX>ENV` is set) →
environment variables → explicit keyword arguments (the CLI's flags).

The environment names of the deployment guide are honoured as given
(`REDIS_URL`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `RATE_LIMIT_*`), beside their
prefixed forms.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from mahavishnu.platform.errors import ConfigurationError, InsecureConfigurationError

__all__ = [
    "MIN_SECRET_BYTES",
    "PlatformSettings",
    "is_loopback",
    "mask_url",
]

MIN_SECRET_BYTES = 32
Environment = Literal["development", "test", "staging", "production"]


def _both(name: str, prefix: str = "MAHAVISHNU_") -> AliasChoices:
    """Accept a deployment-guide name and its prefixed twin."""
    return AliasChoices(name, f"{prefix}{name}", name.lower())


class PlatformSettings(BaseSettings):
    """Settings every service needs: listening, auth, limits, observability."""

    service_name: ClassVar[str] = "mahavishnu"
    env_prefix: ClassVar[str] = "MAHAVISHNU_"

    model_config = SettingsConfigDict(
        env_prefix="MAHAVISHNU_",
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
    )

    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8680, ge=0, le=65535)
    public_url: str | None = None
    """External URL of the service (for OAuth resource metadata); derived from host/port when unset."""

    # --- auth -----------------------------------------------------------
    auth_secret: SecretStr | None = None
    """HS256 signing secret; at least 32 bytes. Turns authentication on."""
    auth_previous_secret: SecretStr | None = None
    """During a rotation: tokens signed with the old secret stay valid until they expire."""
    auth_public_key_file: Path | None = None
    """PEM public key for RS256 tokens. Turns authentication on."""
    auth_audience: str | None = None
    auth_issuer: str = "mahavishnu"
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew tolerated on exp/nbf/iat; bounded so a token cannot live much past its expiry."""
    auth_max_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)

    # --- rate limiting ----------------------------------------------------
    rate_limit_enabled: bool = Field(default=True, validation_alias=_both("RATE_LIMIT_ENABLED"))
    rate_limit_per_minute: int = Field(default=60, gt=0, validation_alias=_both("RATE_LIMIT_PER_MINUTE"))
    rate_limit_per_hour: int = Field(default=1000, gt=0, validation_alias=_both("RATE_LIMIT_PER_HOUR"))
    rate_limit_burst: int = Field(default=20, gt=0, validation_alias=_both("RATE_LIMIT_BURST"))
    """Requests allowed within any one second."""
    rate_limit_fail_open: bool = True
    """When the Redis backend is unreachable: True lets requests through, False refuses them (503)."""
    redis_url: SecretStr | None = Field(default=None, validation_alias=_both("REDIS_URL"))
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

    # --- observability ----------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=_both("OTEL_EXPORTER_OTLP_ENDPOINT")
    )

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
        yaml_sources = [YamlConfigSettingsSource(settings_cls, yaml_file=p) for p in cls.config_files()]
        return (init_settings, env_settings, *reversed(yaml_sources))

    @classmethod
    def config_files(cls) -> list[Path]:
        """The YAML files this process reads, lowest precedence first (missing ones skipped)."""
        prefix = cls.env_prefix
        base = os.environ.get(f"{prefix}CONFIG") or f"settings/{cls.service_name}.yaml"
        files = [Path(base)]
        env = os.environ.get(f"{prefix}ENV")
        if env:
            files.append(Path(base).parent / f"{env}.yaml")
        return [f for f in files if f.is_file()]

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Build settings, turning validation failures into one readable ConfigurationError."""
        from pydantic import ValidationError

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
            problems.append(
                f"refusing to listen on {self.host} without authentication; "
                f"set {self.env_prefix}AUTH_SECRET or bind to 127.0.0.1 "
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


def mask_url(url: str) -> str:
    """Hide the password of a URL such as redis://user:pw@host/0."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:****@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))

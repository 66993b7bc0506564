"""The platform's public face: what a service (Mahavishnu, Session-Buddy, Akosha) builds on.

    from mahavishnu.platform import NotFoundError, ResourceSpec, Service, ToolSpec

The error classes are imported at once (their module imports nothing). Everything else is
imported on first use (PEP 562): `import mahavishnu.platform.errors` runs this file first,
and the CLI and domain code that need only the errors should not pay for the MCP SDK,
Starlette and SQLAlchemy (over a second) to get them. Lazy loading also keeps this file out of
any import cycle: no platform module imports the package itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mahavishnu.platform.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InsecureConfigurationError,
    InvalidArgumentError,
    MahavishnuError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from mahavishnu.platform.app import Service
    from mahavishnu.platform.auth import Principal, Role, current_principal
    from mahavishnu.platform.db import Database, run_migrations
    from mahavishnu.platform.health import ComponentHealth, HealthCheck
    from mahavishnu.platform.mcp import ResourceSpec, ToolSpec
    from mahavishnu.platform.observability import Metrics, get_logger
    from mahavishnu.platform.server import run_service
    from mahavishnu.platform.settings import MigrationSet, PlatformSettings

__all__ = [
    "AuthenticationError",
    "ComponentHealth",
    "ConfigurationError",
    "ConflictError",
    "Database",
    "HealthCheck",
    "InsecureConfigurationError",
    "InvalidArgumentError",
    "MahavishnuError",
    "Metrics",
    "MigrationSet",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformError",
    "PlatformSettings",
    "Principal",
    "RateLimitedError",
    "ResourceSpec",
    "Role",
    "Service",
    "ToolSpec",
    "UnavailableError",
    "current_principal",
    "get_logger",
    "run_migrations",
    "run_service",
]

_LAZY = {
    "Service": "app",
    "Principal": "auth",
    "Role": "auth",
    "current_principal": "auth",
    "Database": "db",
    "run_migrations": "db",
    "ComponentHealth": "health",
    "HealthCheck": "health",
    "ResourceSpec": "mcp",
    "ToolSpec": "mcp",
    "Metrics": "observability",
    "get_logger": "observability",
    "PlatformSettings": "settings",
    "MigrationSet": "settings",
    "run_service": "server",
}


if not TYPE_CHECKING:  # type checkers see the imports above; a module __getattr__ would blind them

    def __getattr__(name: str) -> Any:
        """Import the module that defines `name` on first use, then keep the value here."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

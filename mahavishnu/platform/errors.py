"""One exception hierarchy for every service on the platform.

    MahavishnuError                 code -32000, retryable False
    ├── ConfigurationError          bad settings; refuses start-up
    │   └── InsecureConfigurationError
    ├── InvalidArgumentError        -32602  caller sent something unusable
    ├── NotFoundError               -32004  nothing by that name (within the caller's scope)
    ├── AuthenticationError         -32001  no valid credentials (HTTP 401)
    ├── PermissionDeniedError       -32003  valid credentials, not allowed (HTTP 403)
    ├── RateLimitedError            -32029  over budget (HTTP 429)
    └── UnavailableError            -32050  a dependency is down; retryable

Each class carries a stable JSON-RPC code and a message that is safe to show a
client. Failures of the *access* layer (authentication, permission, rate) are
protocol errors; every other failure inside a tool is a tool error result
(`isError: true`, the code in `_meta`) so the model can read it and correct
itself, as the MCP specification asks. Anything else that escapes a tool is logged with its traceback and
reaches the client only as a generic internal error with the request id.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "InsecureConfigurationError",
    "InvalidArgumentError",
    "MahavishnuError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnavailableError",
]


class MahavishnuError(Exception):
    """Base class: a failure whose message may be shown to the caller as is."""

    code: int = -32000
    retryable: bool = False
    protocol_error: bool = False
    """True: answer with a JSON-RPC error; False: with a tool result flagged isError."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(MahavishnuError):
    """The settings or a configuration file cannot be used."""


class InsecureConfigurationError(ConfigurationError):
    """The settings would run the service insecurely in this environment."""


class InvalidArgumentError(MahavishnuError):
    code = -32602


class NotFoundError(MahavishnuError):
    code = -32004


class AuthenticationError(MahavishnuError):
    code = -32001
    protocol_error = True

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """Bounded label for metrics (expired, bad_signature, ...)."""


class PermissionDeniedError(MahavishnuError):
    code = -32003
    protocol_error = True


class RateLimitedError(MahavishnuError):
    code = -32029
    retryable = True
    protocol_error = True


class UnavailableError(MahavishnuError):
    code = -32050
    retryable = True

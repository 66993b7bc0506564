"""One exception hierarchy for every service on the platform.

    class                         code    rpc     http  outcome       notes
    PlatformError                 -32000  -32000  500   failed        (alias: MahavishnuError)
    ├── ConfigurationError                                            bad settings; refuses start-up
    │   └── InsecureConfigurationError
    ├── InvalidArgumentError      -32602  -32602  400   invalid       caller sent something unusable
    ├── NotFoundError             -32004  -32002  404   not_found     nothing by that name (in scope)
    ├── ConflictError             -32009  -32009  409   conflict      clashes with what is stored
    ├── AuthenticationError       -32001  -32001  401   denied        no valid credentials
    ├── PermissionDeniedError     -32003  -32003  403   denied        valid credentials, not allowed
    ├── RateLimitedError          -32029  -32029  429   rate_limited  over budget; retryable
    └── UnavailableError          -32050  -32050  503   unavailable   a dependency is down; retryable

Each class carries, as class attributes a subclass inherits, everything the
layers above need to answer for it without knowing the class by name: the stable
`code` a client sees in a tool error's `_meta`, the `jsonrpc_code` of a JSON-RPC
error answer, the `http_status` the HTTP gate answers with, and the bounded
`outcome` label the metrics count it under. Its message is safe to show a client.

Failures of the *access* layer (authentication, permission, rate) are protocol
errors; every other failure inside a tool is a tool error result (`isError: true`,
the code in `_meta`) so the model can read it and correct itself, as the MCP
specification asks. A resource read has no error result, so there every failure is
a JSON-RPC error with its `jsonrpc_code` (MCP's -32002 for a missing resource).
Anything else that escapes a tool or resource is logged with its traceback and
reaches the client only as a generic internal error with the request id.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "InsecureConfigurationError",
    "InvalidArgumentError",
    "MahavishnuError",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformError",
    "RateLimitedError",
    "UnavailableError",
]


class PlatformError(Exception):
    """Base class: a failure whose message may be shown to the caller as is."""

    code: ClassVar[int] = -32000
    """Stable code, shown in a tool error result's `_meta`; clients may branch on it."""
    jsonrpc_code: ClassVar[int] = -32000
    """The code when the failure is answered with a JSON-RPC error instead of a tool result."""
    http_status: ClassVar[int] = 500
    """The status when the HTTP layer answers for it before any MCP handler runs."""
    outcome: ClassVar[str] = "failed"
    """Metric label (bounded): how a call ended, shared by every subclass that does not say."""
    retryable: ClassVar[bool] = False
    protocol_error: ClassVar[bool] = False
    """True: a tool answers with a JSON-RPC error; False: with a tool result flagged isError."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


MahavishnuError = PlatformError
"""The platform's first name, kept so existing imports and `except` clauses keep working."""


class ConfigurationError(PlatformError):
    """The settings or a configuration file cannot be used."""


class InsecureConfigurationError(ConfigurationError):
    """The settings would run the service insecurely in this environment."""


class InvalidArgumentError(PlatformError):
    code = jsonrpc_code = -32602
    http_status = 400
    outcome = "invalid"


class NotFoundError(PlatformError):
    code = -32004
    jsonrpc_code = -32002
    """MCP's "resource not found": the only place a not-found becomes a JSON-RPC error."""
    http_status = 404
    outcome = "not_found"


class ConflictError(PlatformError):
    """The request clashes with what is stored (a reused idempotency key with other arguments):
    sending it again as it is will not help."""

    code = jsonrpc_code = -32009
    http_status = 409
    outcome = "conflict"


class AuthenticationError(PlatformError):
    code = jsonrpc_code = -32001
    http_status = 401
    outcome = "denied"
    protocol_error = True

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """Bounded label for metrics (expired, bad_signature, ...)."""


class PermissionDeniedError(PlatformError):
    code = jsonrpc_code = -32003
    http_status = 403
    outcome = "denied"
    protocol_error = True


class RateLimitedError(PlatformError):
    code = jsonrpc_code = -32029
    http_status = 429
    outcome = "rate_limited"
    retryable = True
    protocol_error = True


class UnavailableError(PlatformError):
    code = jsonrpc_code = -32050
    http_status = 503
    outcome = "unavailable"
    retryable = True

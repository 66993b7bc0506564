"""Who may push to `/ingest/memories` and `/ingest/outcomes`, and how often: the checks
`McpGate` makes for `/mcp`, made here because a service's own routes do not pass through it.

A sender is admitted with the deployment's AKOSHA_API_TOKEN (compared in constant time), or
with a platform JWT for Akosha (`aud: akosha`) carrying the admin role; anything else is 401
(403 for a valid Akosha token of a lesser role). With neither a token nor JWT authentication
configured, ingest is as open as `/mcp` is then: development on loopback (the platform refuses
to listen beyond loopback without authentication).

Budgets (the platform's rate limiter, the deployment's RATE_LIMIT_* windows): a sender with the
API token spends its address's (every Session-Buddy shares the token, not a budget), a JWT its
subject's, and a caller not yet authenticated its address's before any signature is checked.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from starlette.types import Scope

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.platform import AuthenticationError, Metrics, Principal
from mahavishnu.platform.auth import LOCAL_PRINCIPAL, TokenVerifier
from mahavishnu.platform.bearer import bearer_token
from mahavishnu.platform.ratelimit import RateLimiter

__all__ = ["API_SENDER", "IngestGate", "Refusal"]

API_SENDER = Principal(subject="akosha-api-token", role="admin")
"""Who a sender with AKOSHA_API_TOKEN is (logs say this name, never the token)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer instead of admission: its status, message, log reason and headers."""

    status: int
    message: str
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


class IngestGate:
    def __init__(
        self,
        *,
        api_token: str | None,
        verifier: TokenVerifier | None,
        limiter: RateLimiter | None,
        metrics: Metrics,
    ) -> None:
        self._api_token = api_token.encode() if api_token is not None else None
        self._verifier = verifier
        self._limiter = limiter
        self._metrics = metrics

    @classmethod
    def from_settings(cls, settings: AkoshaSettings, metrics: Metrics) -> IngestGate:
        return cls(
            api_token=settings.api_token.get_secret_value() if settings.api_token is not None else None,
            verifier=TokenVerifier.from_settings(settings),
            limiter=RateLimiter.from_settings(settings, metrics),
            metrics=metrics,
        )

    async def admit(self, scope: Scope, client: str) -> Principal | Refusal:
        """The sender of this request, or why it is refused."""
        if self._api_token is None and self._verifier is None:
            return await self._budget(f"ip:{client}") or LOCAL_PRINCIPAL
        try:
            token = bearer_token(scope)
        except AuthenticationError as error:
            return await self._budget(f"ip:{client}") or self._unauthenticated(error)
        if self._api_token is not None and hmac.compare_digest(token.encode(), self._api_token):
            return await self._budget(f"token:{client}") or API_SENDER
        principal = self._verifier.lookup(token) if self._verifier is not None else None
        if principal is None:
            refused = await self._budget(f"ip:{client}")
            if refused is not None:
                return refused
            try:
                principal = self._verify(token)
            except AuthenticationError as error:
                return self._unauthenticated(error)
        if not principal.has_role("admin"):
            return Refusal(
                403,
                f"ingest needs AKOSHA_API_TOKEN or an admin token; the caller is {principal.role}",
                "forbidden",
                {"www-authenticate": 'Bearer error="insufficient_scope", scope="admin"'},
            )
        return await self._budget(f"sub:{principal.subject}") or principal

    def _verify(self, token: str) -> Principal:
        if self._verifier is None:
            raise AuthenticationError("the token is not this deployment's AKOSHA_API_TOKEN", "bad_token")
        return self._verifier.verify(token)

    def _unauthenticated(self, error: AuthenticationError) -> Refusal:
        self._metrics.auth_failures.labels(reason=error.reason).inc()
        challenge = "Bearer" if error.reason == "missing" else 'Bearer error="invalid_token"'
        return Refusal(401, error.message, "auth", {"www-authenticate": challenge})

    async def _budget(self, key: str) -> Refusal | None:
        """None while `key` is within its budget; else the 429 (or 503: the limiter is down)."""
        if self._limiter is None:
            return None
        decision = await self._limiter.check(f"ingest:{key}")
        if decision.allowed:
            return None
        if decision.backend_error:
            return Refusal(
                503, "rate limiting is unavailable; try again shortly", "unavailable", {"retry-after": "5"}
            )
        return Refusal(
            429,
            f"rate limit exceeded; retry in {decision.retry_after} s",
            "rate_limited",
            {"retry-after": str(decision.retry_after)},
        )

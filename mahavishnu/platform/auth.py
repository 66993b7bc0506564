"""Bearer JWT authentication and role-based access with a repository-tag scope.

Tokens are HS256 (shared secret) or RS256 (public key). The accepted
algorithm is chosen by which key is configured, never by the token, so
`alg=none` and HS/RS confusion fail as bad algorithms. `exp` is required,
clock skew is bounded by settings, and audience/issuer are checked.

Every service requires an audience, by default its own name: services of one
deployment may share a secret, and a token minted for one must not open
another (unless the deployment gives them one `auth_audience` on purpose).
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import jwt

from mahavishnu.platform.errors import AuthenticationError, ConfigurationError, PermissionDeniedError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.settings import PlatformSettings

__all__ = [
    "LOCAL_PRINCIPAL",
    "ROLES",
    "Principal",
    "Role",
    "TokenVerifier",
    "current_principal",
    "issue_token",
    "principal_var",
]

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
_CACHE_SIZE = 4096
_TIME_CLAIMS = ("exp", "nbf", "iat")
_TENANT = re.compile(r"[A-Za-z0-9._@:-]{1,128}")
"""A tenant name: it keys stored data and appears in logs, so no spaces, slashes or controls."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token subject, its role, the repo tags it may see (empty = all) and
    the tenant whose data it works on (a `tenant` claim; without one, its own subject's)."""

    subject: str
    role: Role
    tags: frozenset[str] = frozenset()
    authenticated: bool = True
    tenant_claim: str | None = None

    @property
    def tenant(self) -> str:
        """The tenant every stored record of this caller belongs to: a service that keeps data
        per tenant narrows every read and write to it, whatever a tool's arguments say."""
        return self.tenant_claim if self.tenant_claim is not None else self.subject

    def has_role(self, minimum: Role) -> bool:
        return _RANK[self.role] >= _RANK[minimum]

    def require_role(self, minimum: Role) -> None:
        if not self.has_role(minimum):
            raise PermissionDeniedError(f"this needs the {minimum} role; the caller is {self.role}")

    def can_see(self, repo_tags: Iterable[str]) -> bool:
        return not self.tags or not self.tags.isdisjoint(repo_tags)


LOCAL_PRINCIPAL = Principal(subject="local", role="admin", authenticated=False)
"""The caller when authentication is off (development on loopback, or stdio)."""

principal_var: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "mahavishnu_principal", default=LOCAL_PRINCIPAL
)


def current_principal() -> Principal:
    return principal_var.get()


class TokenVerifier:
    """Checks a bearer token and turns its claims into a Principal."""

    def __init__(
        self,
        *,
        secret: str | None,
        public_key: str | None,
        previous_secret: str | None = None,
        issuer: str | None,
        audience: str | None,
        leeway_seconds: int,
    ) -> None:
        self._keys: dict[str, Any] = {}
        self._previous = previous_secret
        if secret is not None:
            self._keys["HS256"] = secret
        if public_key is not None:
            self._keys["RS256"] = (
                jwt.algorithms.RSAAlgorithm.from_jwk(public_key) if public_key.startswith("{") else public_key
            )
        if not self._keys:
            raise ConfigurationError("a token verifier needs an HS256 secret or an RS256 public key")
        self._issuer = issuer
        self._audience = audience
        """Required `aud`; None (a bare verifier, never one built from settings) checks none."""
        self._leeway = leeway_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}
        """Verified tokens: signature checks cost more than the rest of the pipeline together."""

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> TokenVerifier | None:
        if not settings.auth_enabled:
            return None
        public_key = None
        if settings.auth_public_key_file is not None:
            try:
                public_key = Path(settings.auth_public_key_file).read_text()
            except OSError as exc:
                raise ConfigurationError(f"cannot read auth_public_key_file: {exc.strerror}") from None
        secret = settings.auth_secret.get_secret_value() if settings.auth_secret else None
        previous = settings.auth_previous_secret.get_secret_value() if settings.auth_previous_secret else None
        return cls(
            secret=secret,
            public_key=public_key,
            previous_secret=previous,
            issuer=settings.auth_issuer,
            audience=settings.token_audience,
            leeway_seconds=settings.auth_leeway_seconds,
        )

    def lookup(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired; None means "not known
        to be valid" (never checked, or expired), and costs no signature check."""
        cached = self._cache.get(token)
        if cached is None:
            return None
        principal, expires = cached
        if time.time() <= expires + self._leeway:
            return principal
        del self._cache[token]
        return None

    def verify(self, token: str) -> Principal:
        """Check a token; a token already verified is answered from a small cache until it expires."""
        cached = self.lookup(token)
        if cached is not None:
            return cached
        principal, expires = self._verify(token)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # evict the oldest entry
        self._cache[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            return self._verify_with(token, None)
        except AuthenticationError as error:
            if error.reason != "bad_signature" or self._previous is None:
                raise
            return self._verify_with(token, self._previous)  # a token from before a key rotation

    def _verify_with(self, token: str, override_key: str | None) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthenticationError("malformed token", reason="malformed") from None
        algorithm = header.get("alg")
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is not None and override_key is not None and algorithm == "HS256":
            key = override_key
        if key is None:
            raise AuthenticationError("token algorithm not accepted", reason="bad_algorithm")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[cast(str, algorithm)],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub", *(["aud"] if self._audience is not None else [])],
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired", reason="expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("token not yet valid", reason="not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("token signature invalid", reason="bad_signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(
                f"token lacks the {exc.claim!r} claim", reason="missing_claim"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("token audience not accepted", reason="bad_audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("token issuer not accepted", reason="bad_issuer") from None
        except jwt.PyJWTError:
            raise AuthenticationError("token invalid", reason="malformed") from None
        return _principal_from_claims(claims), float(claims["exp"])


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Type-check every claim we read: a validly signed token is still the caller's data, and a
    list where a string belongs must be a 401, not a TypeError deep in the pipeline."""
    for name in _TIME_CLAIMS:
        if name in claims and not _is_number(claims[name]):
            raise AuthenticationError(f"token claim {name!r} must be a number", reason="bad_claim")
    role = claims.get("role", "viewer")
    if not isinstance(role, str) or role not in _RANK:
        raise AuthenticationError("token role not recognised", reason="bad_claim")
    tags = claims.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AuthenticationError("token tags must be a list of strings", reason="bad_claim")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError("token subject must be a non-empty string", reason="bad_claim")
    tenant = claims.get("tenant")
    if "tenant" in claims and not (isinstance(tenant, str) and _TENANT.fullmatch(tenant)):
        raise AuthenticationError(
            "token tenant must be 1 to 128 letters, digits or . _ @ : -", reason="bad_claim"
        )
    return Principal(subject=subject, role=role, tags=frozenset(tags), tenant_claim=tenant)


def _is_number(value: object) -> bool:
    """A JSON number: PyJWT would also take "123" or true (it calls int() on them)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def issue_token(
    settings: PlatformSettings,
    *,
    subject: str,
    role: Role,
    tags: Iterable[str] = (),
    ttl_seconds: int,
    tenant: str | None = None,
) -> str:
    """Sign an HS256 token for the service these settings belong to, with its secret and its
    audience (what `mahavishnu token create --service` prints)."""
    if settings.auth_secret is None:
        raise ConfigurationError(f"set {settings.env_prefix}AUTH_SECRET to issue tokens")
    if role not in _RANK:
        raise ConfigurationError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if tenant is not None and not _TENANT.fullmatch(tenant):
        raise ConfigurationError("a tenant is 1 to 128 letters, digits or . _ @ : -")
    if not 0 < ttl_seconds <= settings.auth_max_ttl_seconds:
        raise ConfigurationError(f"ttl must be between 1 second and {settings.auth_max_ttl_seconds} seconds")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "tags": sorted(set(tags)),
        **({"tenant": tenant} if tenant is not None else {}),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "iss": settings.auth_issuer,
        "aud": settings.token_audience,
        "jti": new_id(),
    }
    return jwt.encode(claims, settings.auth_secret.get_secret_value(), algorithm="HS256")

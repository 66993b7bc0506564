"""Where a request's bearer token comes from: the Authorization header, never the URL."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import Scope

from mahavishnu.platform._asgi import header
from mahavishnu.platform.auth import Principal, TokenVerifier
from mahavishnu.platform.errors import AuthenticationError

__all__ = ["bearer_token", "known_principal"]

_TOKEN_QUERY_KEYS = frozenset({"access_token", "token", "auth", "authorization"})


def bearer_token(scope: Scope) -> str:
    """The request's bearer token; AuthenticationError says why there is none to check."""
    query = scope.get("query_string", b"").decode("latin-1")
    if query and any(k.lower() in _TOKEN_QUERY_KEYS for k, _ in parse_qsl(query, keep_blank_values=True)):
        raise AuthenticationError(
            "tokens in the URL are refused (they end up in logs); use the Authorization header",
            reason="query_string",
        )
    authorization = header(scope, b"authorization")
    if not authorization:
        raise AuthenticationError("authentication required: send Authorization: Bearer <token>", "missing")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'", reason="malformed")
    return token.strip()


def known_principal(verifier: TokenVerifier, scope: Scope) -> Principal | None:
    """The principal of a token verified before: the hot path, no signature check."""
    try:
        return verifier.lookup(bearer_token(scope))
    except AuthenticationError:
        return None

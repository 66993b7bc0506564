from __future__ import annotations

import pytest

from mahavishnu.platform.auth import LOCAL_PRINCIPAL, Principal, TokenVerifier, issue_token
from mahavishnu.platform.errors import AuthenticationError, ConfigurationError, PermissionDeniedError
from mahavishnu.platform.settings import PlatformSettings
from tests.support.tokens import claims, hs256, hs256_with_key_bytes

SECRET = "s" * 48


def verifier(**kw: object) -> TokenVerifier:
    args: dict[str, object] = {
        "secret": SECRET,
        "public_key": None,
        "issuer": "mahavishnu",
        "audience": None,
        "leeway_seconds": 10,
    }
    args.update(kw)
    return TokenVerifier(**args)  # type: ignore[arg-type]


def test_issued_token_round_trips() -> None:
    settings = PlatformSettings(auth_secret=SECRET, auth_audience="mahavishnu-api")
    token = issue_token(
        settings, subject="bob", role="operator", tags=["web", "python", "web"], ttl_seconds=60
    )
    principal = verifier(audience="mahavishnu-api").verify(token)
    assert principal == Principal("bob", "operator", frozenset({"web", "python"}))


def test_audience_is_checked_when_configured() -> None:
    with pytest.raises(AuthenticationError) as caught:
        verifier(audience="mahavishnu-api").verify(hs256(claims(aud="other"), SECRET))
    assert caught.value.reason == "bad_audience"


@pytest.mark.parametrize(("tags", "ok"), [(["x", 1], False), ("python", False), (["python"], True)])
def test_tags_claim_must_be_a_list_of_strings(tags: object, ok: bool) -> None:
    token = hs256(claims(tags=tags), SECRET)
    if ok:
        assert verifier().verify(token).tags == frozenset({"python"})
    else:
        with pytest.raises(AuthenticationError):
            verifier().verify(token)


@pytest.mark.parametrize(
    "extra",
    [{"role": ["admin"]}, {"role": {"a": 1}}, {"exp": "99999999999"}, {"iat": True}, {"nbf": "0"}],
)
def test_wrongly_typed_claims_are_bad_claims(extra: dict[str, object]) -> None:
    payload = {**claims(), **extra}
    with pytest.raises(AuthenticationError) as caught:
        verifier().verify(hs256_with_key_bytes(payload, SECRET.encode()))
    assert caught.value.reason == "bad_claim"


def test_lookup_knows_only_tokens_verified_before() -> None:
    check = verifier()
    token = hs256(claims(sub="cached"), SECRET)
    assert check.lookup(token) is None
    assert check.verify(token).subject == "cached"
    assert check.lookup(token) == Principal("cached", "viewer")
    assert check.lookup(hs256(claims(sub="cached"), "t" * 48)) is None


def test_roles_are_ordered() -> None:
    operator = Principal("o", "operator")
    assert operator.has_role("viewer")
    assert operator.has_role("operator")
    assert not operator.has_role("admin")
    with pytest.raises(PermissionDeniedError, match="admin"):
        operator.require_role("admin")
    assert LOCAL_PRINCIPAL.has_role("admin")


def test_tag_scope() -> None:
    scoped = Principal("v", "viewer", frozenset({"python"}))
    assert scoped.can_see(["python", "web"])
    assert not scoped.can_see(["rust"])
    assert Principal("v", "viewer").can_see([])


def test_issue_token_refuses_bad_requests() -> None:
    with pytest.raises(ConfigurationError, match="AUTH_SECRET"):
        issue_token(PlatformSettings(), subject="x", role="viewer", ttl_seconds=60)
    settings = PlatformSettings(auth_secret=SECRET)
    with pytest.raises(ConfigurationError, match="ttl"):
        issue_token(settings, subject="x", role="viewer", ttl_seconds=10**9)


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(secret=None, public_key=None, issuer=None, audience=None, leeway_seconds=0)


def test_previous_secret_keeps_old_tokens_valid_during_rotation() -> None:
    old_secret, new_secret = "o" * 48, "n" * 48
    old_token = hs256(claims(sub="before-rotation"), old_secret)
    rotating = TokenVerifier(
        secret=new_secret,
        public_key=None,
        previous_secret=old_secret,
        issuer="mahavishnu",
        audience=None,
        leeway_seconds=10,
    )
    assert rotating.verify(old_token).subject == "before-rotation"
    assert rotating.verify(hs256(claims(sub="after"), new_secret)).subject == "after"
    finished = TokenVerifier(
        secret=new_secret, public_key=None, issuer="mahavishnu", audience=None, leeway_seconds=10
    )
    with pytest.raises(AuthenticationError) as caught:
        finished.verify(old_token)
    assert caught.value.reason == "bad_signature"
    with pytest.raises(AuthenticationError):
        rotating.verify(hs256(claims(), "x" * 48))


def test_the_tenant_is_the_subject_unless_a_tenant_claim_names_one() -> None:
    assert verifier().verify(hs256(claims(sub="ann"), SECRET)).tenant == "ann"
    principal = verifier().verify(hs256(claims(sub="ann", tenant="acme"), SECRET))
    assert (principal.subject, principal.tenant) == ("ann", "acme")


@pytest.mark.parametrize("tenant", ["", "a b", "a/b", "x" * 129, 7, ["acme"], None, "caf\u00e9"])
def test_a_malformed_tenant_claim_is_a_bad_claim(tenant: object) -> None:
    with pytest.raises(AuthenticationError) as caught:
        verifier().verify(hs256_with_key_bytes({**claims(), "tenant": tenant}, SECRET.encode()))
    assert caught.value.reason == "bad_claim"


def test_issued_tokens_carry_a_checked_tenant() -> None:
    settings = PlatformSettings(auth_secret=SECRET)
    token = issue_token(settings, subject="bob", role="viewer", ttl_seconds=60, tenant="acme")
    assert verifier(audience="mahavishnu").verify(token).tenant == "acme"
    with pytest.raises(ConfigurationError):
        issue_token(settings, subject="bob", role="viewer", ttl_seconds=60, tenant="no spaces")

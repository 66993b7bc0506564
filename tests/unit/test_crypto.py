"""Envelope encryption: round trips, every kind of refusal, rotation, and key parsing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from mahavishnu.platform.crypto import DecryptionError, KeyRing, associated_data, generate_key
from mahavishnu.platform.errors import ConfigurationError

OLD = generate_key()
NEW = generate_key()
TENANT_A = associated_data("tenant-a", "memory-1")


def ring(*keys: str) -> KeyRing:
    return KeyRing.parse(",".join(keys))


def test_round_trip_with_associated_data() -> None:
    keys = ring(NEW)
    token = keys.encrypt(b"remember the milk", associated=TENANT_A)
    assert b"remember the milk" not in token
    assert keys.decrypt(token, associated=TENANT_A) == b"remember the milk"


def test_same_plaintext_encrypts_differently_each_time() -> None:
    keys = ring(NEW)
    assert keys.encrypt(b"same") != keys.encrypt(b"same")


@pytest.mark.parametrize("position", [0, 3, 10, 40, 80, 95, -1])
def test_any_flipped_byte_is_refused(position: int) -> None:
    """Header, wrap nonce, wrapped key, payload nonce, ciphertext and tag are all authenticated."""
    keys = ring(NEW)
    token = bytearray(keys.encrypt(b"a memory worth protecting", associated=TENANT_A))
    token[position] ^= 0x01
    with pytest.raises(DecryptionError):
        keys.decrypt(bytes(token), associated=TENANT_A)


def test_truncated_token_is_malformed() -> None:
    keys = ring(NEW)
    token = keys.encrypt(b"x")
    with pytest.raises(DecryptionError) as caught:
        keys.decrypt(token[:40])
    assert caught.value.reason == "malformed"


def test_wrong_key_is_refused_as_unknown() -> None:
    token = ring(OLD).encrypt(b"secret")
    with pytest.raises(DecryptionError) as caught:
        ring(NEW).decrypt(token)
    assert caught.value.reason == "unknown_key"
    assert ring(OLD).current_key_id in caught.value.message


def test_associated_data_mismatch_is_refused() -> None:
    keys = ring(NEW)
    token = keys.encrypt(b"tenant a's memory", associated=TENANT_A)
    with pytest.raises(DecryptionError) as caught:
        keys.decrypt(token, associated=associated_data("tenant-b", "memory-1"))
    assert caught.value.reason == "authentication_failed"
    with pytest.raises(DecryptionError):
        keys.decrypt(token)  # none at all is a mismatch too


def test_associated_data_parts_are_unambiguous() -> None:
    assert associated_data("ab", "c") != associated_data("a", "bc")
    assert associated_data("t", b"r") == associated_data(b"t", "r")


def test_rotation_moves_tokens_to_the_new_key() -> None:
    before = ring(OLD)
    token = before.encrypt(b"an old memory", associated=TENANT_A)
    during = ring(NEW, OLD)
    assert not during.is_current(token)
    assert during.decrypt(token, associated=TENANT_A) == b"an old memory"  # previous keys still decrypt

    rotated = during.rotate(token)
    assert during.is_current(rotated)
    assert rotated.startswith(during.current_prefix)
    assert not token.startswith(during.current_prefix)
    assert during.decrypt(rotated, associated=TENANT_A) == b"an old memory"

    after = ring(NEW)  # the old key dropped once the sweep is done
    assert after.decrypt(rotated, associated=TENANT_A) == b"an old memory"
    with pytest.raises(DecryptionError) as caught:
        after.decrypt(token, associated=TENANT_A)
    assert caught.value.reason == "unknown_key"


def test_rotation_keeps_associated_data_bound() -> None:
    keys = ring(NEW, OLD)
    rotated = keys.rotate(ring(OLD).encrypt(b"m", associated=TENANT_A))
    with pytest.raises(DecryptionError):
        keys.decrypt(rotated, associated=associated_data("tenant-b", "memory-1"))


def test_rotate_refuses_a_tampered_wrap() -> None:
    keys = ring(NEW, OLD)
    token = bytearray(ring(OLD).encrypt(b"m"))
    token[30] ^= 0x80  # inside the wrapped data key
    with pytest.raises(DecryptionError) as caught:
        keys.rotate(bytes(token))
    assert caught.value.reason == "authentication_failed"


def test_new_tokens_use_the_first_key() -> None:
    keys = ring(NEW, OLD)
    assert keys.current_key_id == ring(NEW).current_key_id
    assert keys.key_ids == [ring(NEW).current_key_id, ring(OLD).current_key_id]
    assert keys.is_current(keys.encrypt(b"x"))
    assert not keys.is_current(b"")


def test_generate_key_is_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32


def test_parse_accepts_secretstr_and_spaces() -> None:
    keys = KeyRing.parse(SecretStr(f" {NEW} , {OLD} "), setting="SESSION_ENCRYPTION_KEY")
    assert keys.key_ids == ring(NEW, OLD).key_ids


SHORT = base64.urlsafe_b64encode(b"k" * 16).decode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "SESSION_ENCRYPTION_KEY is not set"),
        ("  ", "SESSION_ENCRYPTION_KEY is not set"),
        (f"{NEW},,{OLD}", "key 2 of 3 is empty"),
        (SHORT, "key 1 of 1 decodes to 16 bytes; it must be 32"),
        (f"{NEW},{NEW[:-2]}!!", "key 2 of 2 is not urlsafe base64"),
        (f"{NEW},{NEW[:10]} {NEW[10:]}", "key 2 of 2 is not urlsafe base64"),  # not silently dropped
        (f"{NEW},{OLD},{NEW}", "key 3 repeats an earlier key"),
    ],
    ids=["missing", "blank", "empty-entry", "short", "bad-characters", "inner-space", "duplicate"],
)
def test_parse_errors_are_clear_and_never_echo_the_key(value: str | None, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KeyRing.parse(value, setting="SESSION_ENCRYPTION_KEY")
    message = str(caught.value)
    assert expected in message
    error = caught.value  # no chained decoder error that could carry the value either
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    for secret in (NEW, OLD, SHORT, NEW[:10], NEW[10:]):
        assert secret not in message
    assert "SESSION_ENCRYPTION_KEY" in message


def test_repr_shows_ids_not_keys() -> None:
    keys = ring(NEW)
    assert NEW not in repr(keys)
    assert keys.current_key_id in repr(keys)


PROPERTY_RING = ring(NEW, OLD)


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=4096), associated=st.binary(max_size=256))
def test_any_bytes_round_trip_and_survive_rotation(plaintext: bytes, associated: bytes) -> None:
    token = PROPERTY_RING.encrypt(plaintext, associated=associated)
    assert PROPERTY_RING.decrypt(token, associated=associated) == plaintext
    assert PROPERTY_RING.decrypt(PROPERTY_RING.rotate(token), associated=associated) == plaintext


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=512), data=st.data())
def test_any_single_byte_change_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    token = bytearray(PROPERTY_RING.encrypt(plaintext))
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    token[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(DecryptionError):
        PROPERTY_RING.decrypt(bytes(token))

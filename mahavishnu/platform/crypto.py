"""Envelope encryption at rest with key rotation, for every service's sensitive records.

Each record gets its own random 256-bit *data key*; AES-256-GCM encrypts the record with it, and
the *key-encryption key* (the current key of a `KeyRing`) wraps the data key, again with AES-GCM.
Why this and not Fernet/MultiFernet:

- **Associated data.** A memory belongs to a tenant and a record. GCM authenticates associated
  data (`associated_data(tenant, record)`), so a ciphertext copied into another tenant's or
  record's row fails to decrypt instead of silently showing one tenant another's memory. Fernet
  has no associated data.
- **Cheap rotation.** `KeyRing.rotate` unwraps the data key under the old key and wraps it under
  the current one; the record's ciphertext is untouched, so a sweep costs the same for a 100-byte
  and a 10-MB record, and needs neither the plaintext nor the record's associated data.
- **No nonce budget on the long-lived key.** Each data key encrypts one record, so the GCM limit
  of about 2**32 random nonces per key applies only to wraps under one key-encryption key, and
  every rotation resets it.

Only `cryptography`'s AES-GCM (`AESGCM`) and the standard library's HMAC are used; nothing here
is a cipher of our own.

Token format (bytes, all fixed-size fields before the ciphertext)::

    version (1) | key id (4) | wrap nonce (12) | wrapped data key (32 + 16 tag)
                | payload nonce (12) | payload ciphertext + 16-byte tag

The version byte and key id are authenticated by both GCM operations (the header is the wrap's
associated data; the version is part of the payload's). The key id is the first four bytes of
HMAC-SHA256(key, label): it names a key without revealing anything about it, and lets
`decrypt` pick the right key at once and a re-encryption sweep skip current tokens
(`KeyRing.is_current`) without any cryptography.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
from collections.abc import Sequence
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from mahavishnu.platform.errors import ConfigurationError, MahavishnuError

__all__ = ["DecryptionError", "KeyRing", "associated_data", "generate_key"]

KEY_BYTES = 32
_VERSION = 1
_KEY_ID_BYTES = 4
_KEY_ID_LABEL = b"mahavishnu.platform.crypto key id v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = 1 + _KEY_ID_BYTES
_WRAPPED_BYTES = KEY_BYTES + _TAG_BYTES
_PAYLOAD_OFFSET = _HEADER_BYTES + _NONCE_BYTES + _WRAPPED_BYTES
_MIN_TOKEN_BYTES = _PAYLOAD_OFFSET + _NONCE_BYTES + _TAG_BYTES

DecryptionFailure = Literal["malformed", "unknown_key", "authentication_failed"]


class DecryptionError(MahavishnuError):
    """A token cannot be decrypted: altered, cut short, under a key the ring lacks, or bound to
    other associated data. The message names no key material and no plaintext."""

    def __init__(self, message: str, reason: DecryptionFailure) -> None:
        super().__init__(message)
        self.reason: DecryptionFailure = reason
        """Bounded label for metrics and for telling a missing key from tampering."""


def generate_key() -> str:
    """A new key for a key-ring setting: 32 random bytes, urlsafe base64 (44 characters)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode()


def associated_data(*parts: str | bytes) -> bytes:
    """Unambiguous associated data from several parts, e.g. `associated_data(tenant, record_id)`.

    Each part is length-prefixed, so ("ab", "c") and ("a", "bc") bind differently; plain
    concatenation would let one record's ciphertext be valid for the other.
    """
    out = bytearray()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def _key_id(key: bytes) -> bytes:
    return hmac.digest(key, _KEY_ID_LABEL, "sha256")[:_KEY_ID_BYTES]


class KeyRing:
    """The current key (encrypts and decrypts) and previous keys (decrypt only).

    To rotate: put a new key first in the setting and keep the old ones after it; run a sweep that
    calls `rotate` on every token for which `is_current` is false; then drop the old keys.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("a key ring needs at least one key")
        self._ciphers: dict[bytes, AESGCM] = {}
        for index, key in enumerate(keys, start=1):
            if len(key) != KEY_BYTES:
                raise ConfigurationError(f"key {index} is {len(key)} bytes; it must be {KEY_BYTES}")
            kid = _key_id(key)
            if kid in self._ciphers:
                raise ConfigurationError(f"key {index} repeats an earlier key (or shares its key id)")
            self._ciphers[kid] = AESGCM(key)
        self._current = _key_id(keys[0])

    @classmethod
    def parse(cls, value: str | SecretStr | None, *, setting: str = "the encryption key") -> KeyRing:
        """A ring from a comma-separated list of urlsafe-base64 keys, the current one first.

        Errors name the setting and the key's position, never the key.
        """
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or not text.strip():
            raise ConfigurationError(
                f"{setting} is not set; generate a key with "
                "`python -c 'from mahavishnu.platform.crypto import generate_key; print(generate_key())'`"
            )
        entries = [entry.strip() for entry in text.split(",")]
        keys = [_decode_key(entry, index, len(entries), setting) for index, entry in enumerate(entries, 1)]
        try:
            return cls(keys)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{setting}: {exc.message}") from None

    @property
    def current_key_id(self) -> str:
        """The current key's id in hex: safe to log, e.g. at the start of a rotation sweep."""
        return self._current.hex()

    @property
    def key_ids(self) -> list[str]:
        """Every key's id in hex, the current one first."""
        return [kid.hex() for kid in self._ciphers]

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r})"

    def encrypt(self, plaintext: bytes, *, associated: bytes = b"") -> bytes:
        """Encrypt under a fresh data key, wrapped by the current key; `associated` is bound but
        not stored, so `decrypt` must be given the same bytes."""
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        header = bytes([_VERSION]) + self._current
        payload_nonce = os.urandom(_NONCE_BYTES)
        payload = AESGCM(data_key).encrypt(payload_nonce, plaintext, _payload_aad(associated))
        return self._wrap(header, data_key) + payload_nonce + payload

    def decrypt(self, token: bytes, *, associated: bytes = b"") -> bytes:
        """The plaintext, or `DecryptionError` if anything about the token or `associated` differs."""
        data_key = self._unwrap(token)
        nonce = token[_PAYLOAD_OFFSET : _PAYLOAD_OFFSET + _NONCE_BYTES]
        try:
            return AESGCM(data_key).decrypt(
                nonce, token[_PAYLOAD_OFFSET + _NONCE_BYTES :], _payload_aad(associated)
            )
        except InvalidTag:
            raise _failed() from None

    @property
    def current_prefix(self) -> bytes:
        """The bytes every token under the current key starts with: a store finds the tokens
        a rotation sweep must visit with one comparison in SQL, without reading them all."""
        return bytes([_VERSION]) + self._current

    def is_current(self, token: bytes) -> bool:
        """True when the token's header names the current key: a sweep can skip it.

        Reads the header only; authenticity is checked when the token is decrypted.
        """
        return token[:_HEADER_BYTES] == self.current_prefix

    def rotate(self, token: bytes) -> bytes:
        """The same record with its data key re-wrapped under the current key.

        The payload is not re-encrypted; a token already under the current key gets a new wrap
        all the same (call `is_current` first to skip it). Raises `DecryptionError` when the
        token's key is no longer in the ring or its wrap was altered.
        """
        data_key = self._unwrap(token)
        header = bytes([_VERSION]) + self._current
        return self._wrap(header, data_key) + token[_PAYLOAD_OFFSET:]

    def _wrap(self, header: bytes, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._ciphers[self._current].encrypt(nonce, data_key, header)

    def _unwrap(self, token: bytes) -> bytes:
        if len(token) < _MIN_TOKEN_BYTES or token[0] != _VERSION:
            raise DecryptionError("not a token of this format (cut short or another version)", "malformed")
        header, kid = token[:_HEADER_BYTES], token[1:_HEADER_BYTES]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"encrypted under key id {kid.hex()}, which is not in the key ring", "unknown_key"
            )
        nonce = token[_HEADER_BYTES : _HEADER_BYTES + _NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, token[_HEADER_BYTES + _NONCE_BYTES : _PAYLOAD_OFFSET], header)
        except InvalidTag:
            raise _failed() from None


def _payload_aad(associated: bytes) -> bytes:
    return bytes([_VERSION]) + associated


def _failed() -> DecryptionError:
    return DecryptionError(
        "the token does not authenticate: it was altered or belongs to other associated data",
        "authentication_failed",
    )


def _decode_key(entry: str, index: int, count: int, setting: str) -> bytes:
    """One key from urlsafe base64; `validate=True` so stray characters are refused, not dropped."""
    where = f"{setting}: key {index} of {count}"
    if not entry:
        raise ConfigurationError(f"{where} is empty (a stray comma?)")
    try:
        key = base64.b64decode(entry, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{where} is not urlsafe base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{where} decodes to {len(key)} bytes; it must be {KEY_BYTES} (AES-256)")
    return key

"""Signing test tokens: good ones, and every kind of bad one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.server import SECRET


def claims(
    sub: str = "alice",
    role: str = "viewer",
    tags: list[str] | None = None,
    aud: str | None = "mahavishnu",
    **extra: Any,
) -> dict[str, Any]:
    """Good claims for Mahavishnu (its audience); `aud=None` leaves the audience out, another
    name mints for another service."""
    now = int(time.time())
    base = {
        "sub": sub,
        "role": role,
        "tags": tags or [],
        "iat": now,
        "exp": now + 600,
        "iss": "mahavishnu",
        "aud": aud,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def rsa_keypair(folder: Path) -> tuple[bytes, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_path = folder / "jwt-public.pem"
    public_path.write_bytes(public)
    return private, public_path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(payload: dict[str, Any]) -> str:
    """`alg: none`: a token with no signature at all."""
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(payload).encode())}."


def hs256_with_key_bytes(payload: dict[str, Any], key: bytes) -> str:
    """The HS/RS confusion attack: HMAC-sign with the server's *public* RSA key as the secret."""
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(payload).encode())}"
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"

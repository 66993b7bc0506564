"""Akosha's settings and keys: production refuses to start without a strong AKOSHA_API_TOKEN or
without AKOSHA_ENCRYPTION_KEY; development makes a key once in the data folder and says so."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from mahavishnu.akosha.keys import DEV_KEY_FILE, key_ring, open_document, seal_document
from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.akosha.wire import MemoryDocument
from mahavishnu.platform import ConfigurationError
from mahavishnu.platform.crypto import generate_key
from tests.support.akosha import akosha_env
from tests.support.server import SECRET

STRONG = "s" * 32
DOCUMENT = MemoryDocument.model_validate(
    {
        "content": "c",
        "kind": "note",
        "tags": [],
        "project": None,
        "session_id": None,
        "importance": 0.5,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
)


def test_its_identity() -> None:
    settings = AkoshaSettings()
    assert (settings.service_name, settings.env_prefix, settings.port) == ("akosha", "AKOSHA_", 8682)
    assert settings.token_audience == "akosha"
    assert settings.migrations is not None
    assert settings.migrations.version_table == "alembic_version_akosha"


def test_the_token_and_key_come_from_their_deployment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("AKOSHA_API_TOKEN", STRONG)
    monkeypatch.setenv("AKOSHA_ENCRYPTION_KEY", key)
    settings = AkoshaSettings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == STRONG
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == key
    assert STRONG not in repr(settings)
    assert STRONG not in str(settings.redacted())


def _production(**values: str) -> AkoshaSettings:
    return AkoshaSettings(env="production", auth_secret=SECRET, **values)  # type: ignore[arg-type]


def test_production_needs_a_token_and_a_key() -> None:
    assert _production(api_token=STRONG, encryption_key=generate_key()).check_secure() == []
    assert any("AKOSHA_API_TOKEN" in p for p in _production(encryption_key=generate_key()).check_secure())
    assert any("AKOSHA_ENCRYPTION_KEY" in p for p in _production(api_token=STRONG).check_secure())


def test_a_short_token_is_refused_in_every_environment() -> None:
    for env in ("development", "production"):
        problems = AkoshaSettings(env=env, api_token="s" * 31).check_secure()  # type: ignore[arg-type]
        assert any("shorter than 32 bytes" in p for p in problems), env


def test_production_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = akosha_env(
        tmp_path, AKOSHA_ENV="production", AKOSHA_AUTH_SECRET=SECRET, AKOSHA_ENCRYPTION_KEY=generate_key()
    )
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu.akosha", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to start: production mode needs AKOSHA_API_TOKEN" in done.stderr


def test_development_makes_a_key_once_and_warns(tmp_path: Path) -> None:
    settings = AkoshaSettings(data_dir=tmp_path)
    with structlog.testing.capture_logs() as logs:
        first = key_ring(settings)
        second = key_ring(settings)
    path = tmp_path / DEV_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.key_ids == second.key_ids
    warnings = [e for e in logs if e["event"] == "development_encryption_key"]
    assert [w["created"] for w in warnings] == [True, False]
    assert all("AKOSHA_ENCRYPTION_KEY" in w["advice"] for w in warnings)
    sealed = seal_document(first, "box", "acme", "m", 1, DOCUMENT)
    assert open_document(second, "box", "acme", "m", 1, sealed) == DOCUMENT


def test_a_configured_key_is_used_and_a_bad_one_named() -> None:
    key = generate_key()
    ring = key_ring(AkoshaSettings(encryption_key=key))  # type: ignore[arg-type]
    assert len(ring.key_ids) == 1
    with pytest.raises(ConfigurationError, match="AKOSHA_ENCRYPTION_KEY: key 1 of 1 is not urlsafe base64"):
        key_ring(AkoshaSettings(encryption_key="not a key!"))  # type: ignore[arg-type]

"""Session-Buddy's settings for pushing to Akosha: the URL, the token under its shared name, the
source name, and production's refusal to push without a token."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mahavishnu.platform import ConfigurationError
from mahavishnu.session_buddy.settings import SOURCE_NAME, SessionBuddySettings

KEY = "k" * 43
"""Stands for an encryption key: check_secure only asks whether one is set."""
AUTH = "a" * 48


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Nothing from this shell: no SESSION_* names, no shared names, no settings file."""
    shared = set(SessionBuddySettings.shared_env.values())
    for key in list(os.environ):
        if key.startswith("SESSION_") or key in shared:
            monkeypatch.delenv(key)
    monkeypatch.setenv("SESSION_BUDDY_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("SESSION_BUDDY_DATA_DIR", str(tmp_path))
    return monkeypatch


def test_the_token_is_read_from_the_name_akosha_shares(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AKOSHA_API_TOKEN", "shared-with-akosha")
    clean_env.setenv("SESSION_BUDDY_AKOSHA_URL", "http://akosha:8682/")
    clean_env.setenv("SESSION_BUDDY_SOURCE_NAME", "build-host.example")
    clean_env.setenv("SESSION_BUDDY_OUTBOX_BATCH_SIZE", "50")
    settings = SessionBuddySettings.load()
    assert settings.akosha_token is not None
    assert settings.akosha_token.get_secret_value() == "shared-with-akosha"
    assert settings.akosha_url == "http://akosha:8682"
    assert (settings.source_name, settings.outbox_batch_size) == ("build-host.example", 50)
    assert SessionBuddySettings.env_names()["akosha_token"] == "AKOSHA_API_TOKEN"
    assert "shared-with-akosha" not in str(settings.redacted())


def test_pushing_is_off_and_the_source_is_this_host_by_default(clean_env: pytest.MonkeyPatch) -> None:
    settings = SessionBuddySettings.load()
    assert settings.akosha_url is None
    assert settings.outbox_batch_size == 200
    assert SOURCE_NAME.match(settings.source_name)


def test_production_refuses_to_push_without_a_token(clean_env: pytest.MonkeyPatch) -> None:
    base = {"env": "production", "encryption_key": KEY, "auth_secret": AUTH}
    without = SessionBuddySettings.load(**base, akosha_url="http://akosha:8682")
    assert any("AKOSHA_API_TOKEN" in problem for problem in without.check_secure())
    with_token = SessionBuddySettings.load(**base, akosha_url="http://akosha:8682", akosha_token="t" * 32)
    assert with_token.check_secure() == []
    assert SessionBuddySettings.load(**base).check_secure() == []  # not pushing needs no token


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("akosha_url", "ftp://akosha:8682", "http(s) URL"),
        ("akosha_url", "akosha:8682", "http(s) URL"),
        ("akosha_url", "http://akosha:8682/?x=1", "without query"),
        ("akosha_url", "http://user:pw@akosha:8682", "AKOSHA_API_TOKEN"),
        ("akosha_url", "http://akosha:99999", "akosha_url"),
        ("source_name", "my laptop!", "source_name"),
        ("source_name", "x" * 101, "source_name"),
        ("outbox_batch_size", 0, "outbox_batch_size"),
    ],
)
def test_bad_push_settings_are_refused_with_the_settings_name(
    clean_env: pytest.MonkeyPatch, name: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as refused:
        SessionBuddySettings.load(**{name: value})
    assert name in refused.value.message
    assert "pw" not in refused.value.message

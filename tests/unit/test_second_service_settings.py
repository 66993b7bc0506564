"""A second service's settings and tokens (the throwaway Echo in tests/support/echo_service):
its own prefix, port, files and audience; the deployment's shared names; the same refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.auth import TokenVerifier, issue_token
from mahavishnu.platform.errors import AuthenticationError, ConfigurationError
from mahavishnu.platform.settings import PlatformSettings
from tests.support.echo_service.settings import EchoSettings
from tests.support.tokens import claims, hs256

SECRET = "e" * 48
SHARED = ("POSTGRES_URL", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "POOL_MIN_SIZE", "POOL_MAX_SIZE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "ECHO_", "RATE_LIMIT_")) or key in SHARED:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # the settings folder: tmp_path/mahavishnu
    (tmp_path / "mahavishnu").mkdir()
    return tmp_path


def test_it_reads_its_own_prefix_and_not_mahavishnus(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MAHAVISHNU_PORT": "1111",
        "MAHAVISHNU_AUTH_SECRET": SECRET,
        "MAHAVISHNU_DATA_DIR": "/elsewhere",
        "MAHAVISHNU_LOG_LEVEL": "ERROR",
        "ECHO_GREETING": "hello",
        "ECHO_LOG_LEVEL": "DEBUG",
    }.items():
        monkeypatch.setenv(name, value)
    echo = EchoSettings.load()
    data_home = Path(os.environ["XDG_DATA_HOME"]) / "mahavishnu"
    assert (echo.port, echo.auth_enabled, echo.data_dir) == (8690, False, data_home)
    assert (echo.greeting, echo.log_level) == ("hello", "DEBUG")
    monkeypatch.setenv("ECHO_PORT", "2222")
    assert EchoSettings.load().port == 2222
    assert MahavishnuSettings.load().port == 1111  # and Mahavishnu does not read ECHO_*
    with pytest.raises(ConfigurationError, match="greeting"):
        MahavishnuSettings.load(greeting="x")


def test_it_reads_the_shared_deployment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = {
        "POSTGRES_URL": "postgresql://u@db:5432/fleet",
        "REDIS_URL": "redis://cache:6379/0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "RATE_LIMIT_ENABLED": "false",
        "RATE_LIMIT_PER_MINUTE": "7",
        "POOL_MIN_SIZE": "2",
        "POOL_MAX_SIZE": "4",
    }
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
    for settings in (EchoSettings.load(), MahavishnuSettings.load()):
        assert settings.effective_database_url == "postgresql://u@db:5432/fleet"
        assert settings.redis_url is not None
        assert settings.redis_url.get_secret_value() == "redis://cache:6379/0"
        assert settings.otel_exporter_otlp_endpoint == "http://collector:4318"
        assert (settings.rate_limit_enabled, settings.rate_limit_per_minute) == (False, 7)
        assert (settings.db_pool_min_size, settings.db_pool_max_size) == (2, 4)
    monkeypatch.setenv("ECHO_RATE_LIMIT_PER_MINUTE", "9")  # the service's own name is more specific
    assert EchoSettings.load().rate_limit_per_minute == 9
    assert MahavishnuSettings.load().rate_limit_per_minute == 7


def test_its_files_are_its_own(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = clean_env / "mahavishnu"
    (settings / "mahavishnu.yaml").write_text("repos_file: fleet.yaml\nport: 9000\n")
    (settings / "staging.yaml").write_text("repos_file: staging.yaml\n")  # Mahavishnu's env file
    (settings / "echo.yaml").write_text("greeting: from-yaml\n")
    (settings / "echo.staging.yaml").write_text("port: 9100\n")
    monkeypatch.setenv("ECHO_ENV", "staging")
    echo = EchoSettings.load()
    assert (echo.greeting, echo.port, echo.env) == ("from-yaml", 9100, "staging")
    assert EchoSettings.config_files() == [settings / "echo.yaml", settings / "echo.staging.yaml"]
    assert echo.effective_database_url.endswith("/mahavishnu/echo.db")
    assert MahavishnuSettings.load().effective_database_url.endswith("/mahavishnu/mahavishnu.db")


def test_its_names_follow_from_the_service_name() -> None:
    echo = EchoSettings.load()
    assert (echo.service_name, echo.metric_prefix, echo.token_audience) == ("echo", "echo", "echo")
    assert EchoSettings.env_names()["greeting"] == "ECHO_GREETING"
    assert EchoSettings.env_names()["database_url"] == "POSTGRES_URL"
    assert EchoSettings.migrations is not None
    assert EchoSettings.migrations.version_table == "alembic_version_echo"

    class SessionBuddyLike(
        PlatformSettings, service_name="session-buddy", env_prefix="SESSION_BUDDY_", default_port=8678
    ):
        pass

    buddy = SessionBuddyLike.load()
    assert (buddy.port, buddy.metric_prefix, buddy.token_audience) == (8678, "session_buddy", "session-buddy")
    assert buddy.migrations is None  # a service's tree is never inherited from the base


def test_a_new_service_must_name_itself() -> None:
    with pytest.raises(TypeError, match="must name its service"):

        class Anonymous(PlatformSettings):
            pass

    with pytest.raises(TypeError, match="env_prefix"):

        class Lowercase(PlatformSettings, service_name="x", env_prefix="x_", default_port=1):
            pass

    class Narrower(EchoSettings):  # a subclass of a service's settings inherits its identity
        pass

    assert (Narrower.service_name, Narrower.env_prefix, Narrower.default_port) == ("echo", "ECHO_", 8690)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"env": "production"}, "production mode needs ECHO_AUTH_SECRET"),
        ({"env": "production", "auth_secret": "short"}, "ECHO_AUTH_SECRET is shorter than 32 bytes"),
        ({"host": "0.0.0.0"}, "set ECHO_AUTH_SECRET or bind to 127.0.0.1"),
    ],
)
def test_the_production_refusals_hold_for_it(overrides: dict[str, str], problem: str) -> None:
    problems = EchoSettings.load(**overrides).check_secure()
    assert any(problem in p for p in problems), problems
    assert EchoSettings.load(env="production", auth_secret=SECRET, host="0.0.0.0").check_secure() == []


def _verifier(settings: PlatformSettings) -> TokenVerifier:
    verifier = TokenVerifier.from_settings(settings)
    assert verifier is not None
    return verifier


def test_a_token_opens_only_the_service_it_was_minted_for() -> None:
    echo = EchoSettings.load(auth_secret=SECRET)
    mahavishnu = MahavishnuSettings.load(auth_secret=SECRET)  # one secret for the whole deployment
    for_echo = issue_token(echo, subject="ci", role="viewer", ttl_seconds=60)
    for_mahavishnu = issue_token(mahavishnu, subject="ci", role="viewer", ttl_seconds=60)
    assert _verifier(echo).verify(for_echo).subject == "ci"
    assert _verifier(mahavishnu).verify(for_mahavishnu).subject == "ci"
    for verifier, token in ((_verifier(echo), for_mahavishnu), (_verifier(mahavishnu), for_echo)):
        with pytest.raises(AuthenticationError) as caught:
            verifier.verify(token)
        assert caught.value.reason == "bad_audience"
    with pytest.raises(AuthenticationError) as caught:
        _verifier(echo).verify(hs256(claims(aud=None), SECRET))
    assert caught.value.reason == "missing_claim"
    assert "'aud'" in caught.value.message


def test_a_deployment_may_opt_into_one_audience_for_all() -> None:
    echo = EchoSettings.load(auth_secret=SECRET, auth_audience="fleet")
    mahavishnu = MahavishnuSettings.load(auth_secret=SECRET, auth_audience="fleet")
    token = issue_token(mahavishnu, subject="ops", role="admin", ttl_seconds=60)
    assert _verifier(echo).verify(token).role == "admin"
    with pytest.raises(AuthenticationError):  # a service left on its own audience still refuses it
        _verifier(EchoSettings.load(auth_secret=SECRET)).verify(token)

"""Settings layering: defaults → base YAML → environment YAML → environment variables → flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.errors import ConfigurationError
from mahavishnu.platform.settings import is_loopback, mask_url

SECRET = "x" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "RATE_LIMIT_")) or key in {
            "REDIS_URL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        }:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # the settings folder: tmp_path/mahavishnu
    (tmp_path / "mahavishnu").mkdir()
    return tmp_path


def test_defaults() -> None:
    settings = MahavishnuSettings.load()
    assert (settings.host, settings.port, settings.env) == ("127.0.0.1", 8680, "development")
    assert settings.rate_limit_per_minute == 60
    assert settings.rate_limit_per_hour == 1000
    assert settings.max_body_bytes == 1024 * 1024
    assert not settings.auth_enabled


def test_layers_apply_in_order(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "mahavishnu" / "mahavishnu.yaml").write_text(
        "port: 9000\nlog_level: DEBUG\nrate_limit_per_hour: 10\n"
    )
    (clean_env / "mahavishnu" / "staging.yaml").write_text("port: 9100\nrate_limit_per_hour: 20\n")
    monkeypatch.setenv("MAHAVISHNU_ENV", "staging")
    monkeypatch.setenv("RATE_LIMIT_PER_HOUR", "30")
    settings = MahavishnuSettings.load()
    assert settings.log_level == "DEBUG"  # base file
    assert settings.port == 9100  # environment file beats base file
    assert settings.rate_limit_per_hour == 30  # environment variable beats files
    assert MahavishnuSettings.load(port=9999).port == 9999  # flags beat everything


def test_config_variable_names_the_base_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = clean_env / "elsewhere.yaml"
    other.write_text("port: 9300\n")
    monkeypatch.setenv("MAHAVISHNU_CONFIG", str(other))
    assert MahavishnuSettings.load().port == 9300


def test_deployment_guide_names_and_prefixed_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_ENABLED", "false")
    monkeypatch.setenv("MAHAVISHNU_RATE_LIMIT_PER_MINUTE", "7")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    settings = MahavishnuSettings.load()
    assert settings.rate_limit_enabled is False
    assert settings.rate_limit_per_minute == 7
    assert settings.otel_exporter_otlp_endpoint == "http://collector:4318"


def test_invalid_values_are_one_readable_error(clean_env: Path) -> None:
    (clean_env / "mahavishnu" / "mahavishnu.yaml").write_text("port: 70000\nunknown_setting: 1\n")
    with pytest.raises(ConfigurationError) as caught:
        MahavishnuSettings.load()
    assert "port" in caught.value.message
    assert "unknown_setting" in caught.value.message


def test_bad_trusted_proxy_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        MahavishnuSettings.load(trusted_proxies=["not-an-ip"])


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"env": "production"}, "production mode needs"),
        ({"env": "production", "auth_secret": "short"}, "shorter than 32 bytes"),
        ({"env": "development", "auth_secret": "short"}, "shorter than 32 bytes"),
        ({"env": "staging", "host": "0.0.0.0"}, "listening on 0.0.0.0 without authentication"),
        ({"env": "development", "host": "0.0.0.0"}, "listening on 0.0.0.0 without authentication"),
        ({"env": "test", "host": "10.0.0.5"}, "listening on 10.0.0.5 without authentication"),
        ({"env": "production", "allow_unauthenticated_network": True}, "production mode needs"),
    ],
)
def test_insecure_configurations_are_refused(overrides: dict[str, str], problem: str) -> None:
    problems = MahavishnuSettings.load(**overrides).check_secure()
    assert any(problem in p for p in problems), problems


def test_unauthenticated_network_needs_the_loud_setting_and_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAHAVISHNU_ALLOW_UNAUTHENTICATED_NETWORK", "true")
    settings = MahavishnuSettings.load(host="0.0.0.0")
    assert settings.check_secure() == []
    assert len(settings.insecure_warnings()) == 1
    assert "WITHOUT authentication" in settings.insecure_warnings()[0]
    assert MahavishnuSettings.load(host="127.0.0.1").insecure_warnings() == []
    assert MahavishnuSettings.load(host="0.0.0.0", auth_secret=SECRET).insecure_warnings() == []


def test_stdio_does_not_listen_so_the_host_does_not_matter() -> None:
    settings = MahavishnuSettings.load(host="0.0.0.0")
    assert settings.check_secure(listening=False) == []
    assert settings.insecure_warnings(listening=False) == []


def test_new_request_limits_have_safe_defaults() -> None:
    settings = MahavishnuSettings.load()
    assert settings.max_json_depth == 64
    assert settings.health_details_public is False
    assert settings.allow_unauthenticated_network is False
    with pytest.raises(ConfigurationError, match="max_json_depth"):
        MahavishnuSettings.load(max_json_depth=10_000)


def test_secure_production_configuration_passes() -> None:
    settings = MahavishnuSettings.load(env="production", auth_secret=SECRET, host="0.0.0.0")
    assert settings.check_secure() == []


def test_redacted_hides_secrets() -> None:
    settings = MahavishnuSettings.load(auth_secret=SECRET, redis_url="redis://u:pw@cache:6379/1")
    shown = settings.redacted()
    assert shown["auth_secret"] == "**********"
    assert shown["redis_url"] == "redis://u:****@cache:6379/1"
    assert SECRET not in str(shown)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"

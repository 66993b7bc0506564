"""Temporal over TLS, as a cloud cluster asks for it: the engine's client speaks TLS to a frontend
whose certificate a private CA signed (MAHAVISHNU_TEMPORAL_TLS_CA_FILE), presents its client
certificate where the frontend requires one (mTLS), sends an API key, and refuses what it cannot
trust, naming the address. The frontend is the real dev server behind a TLS-terminating proxy
(`tests/support/tls.py`): the dev server itself speaks plaintext only."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mahavishnu.orchestrator.service import temporal_config
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.temporal import TemporalTls
from mahavishnu.orchestrator.workflows.temporal.engine import connect
from mahavishnu.platform.errors import ConfigurationError
from tests.support.temporal import TemporalServer
from tests.support.tls import CertificateAuthority, TlsProxy

API_KEY = "tmprl-test-key-never-shown-0123456789"
TOGETHER = "temporal_tls_cert_file and temporal_tls_key_file go together"


def settings(tmp_path: Path, address: str, **tls: Any) -> MahavishnuSettings:
    return MahavishnuSettings.load(data_dir=tmp_path / "var", temporal_address=address, **tls)


async def test_tls_to_a_frontend_signed_by_a_private_ca(
    temporal_dev_server: TemporalServer, tmp_path: Path
) -> None:
    ca = CertificateAuthority(tmp_path)
    async with TlsProxy(temporal_dev_server.address, ca.issue("frontend", server=True)) as proxy:
        config = temporal_config(
            settings(tmp_path, proxy.address, temporal_tls=True, temporal_tls_ca_file=ca.ca)
        )
        client = await connect(config)
        assert await client.service_client.check_health()
        assert proxy.handshakes >= 1

        with pytest.raises(ConnectionError, match=f"cannot reach Temporal at {proxy.address}"):
            await connect(dataclasses.replace(config, tls=TemporalTls()))  # the system's roots: untrusted
        with pytest.raises(ConnectionError, match=f"cannot reach Temporal at {proxy.address}"):
            await connect(dataclasses.replace(config, tls=None))  # plaintext to a TLS port


async def test_mtls_presents_the_client_certificate(
    temporal_dev_server: TemporalServer, tmp_path: Path
) -> None:
    ca = CertificateAuthority(tmp_path)
    client_cert = ca.issue("mahavishnu", server=False)
    frontend = ca.issue("frontend", server=True)
    async with TlsProxy(temporal_dev_server.address, frontend, client_ca=ca.ca) as proxy:
        config = temporal_config(
            settings(
                tmp_path,
                proxy.address,
                temporal_tls_ca_file=ca.ca,
                temporal_tls_cert_file=client_cert.cert,
                temporal_tls_key_file=client_cert.key,
            )
        )
        assert config.tls is not None, "a client certificate turns TLS on"
        assert await (await connect(config)).service_client.check_health()

        without = dataclasses.replace(config, tls=TemporalTls(ca=config.tls.ca))
        with pytest.raises(ConnectionError, match=f"cannot reach Temporal at {proxy.address}"):
            await connect(without)


async def test_an_api_key_turns_tls_on_and_is_never_shown(
    temporal_dev_server: TemporalServer, tmp_path: Path
) -> None:
    ca = CertificateAuthority(tmp_path)
    async with TlsProxy(temporal_dev_server.address, ca.issue("frontend", server=True)) as proxy:
        loaded = settings(tmp_path, proxy.address, temporal_api_key=API_KEY, temporal_tls_ca_file=ca.ca)
        config = temporal_config(loaded)
        assert (config.api_key, config.tls is not None) == (API_KEY, True)
        assert await (await connect(config)).service_client.check_health()
    assert API_KEY not in repr(config)
    assert API_KEY not in repr(loaded)
    assert API_KEY not in loaded.model_dump_json()


def test_a_plain_cluster_needs_no_tls(tmp_path: Path) -> None:
    config = temporal_config(settings(tmp_path, "temporal:7233"))
    assert (config.tls, config.api_key) == (None, None)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"temporal_tls_cert_file": "client.pem"}, TOGETHER),
        ({"temporal_tls_key_file": "client.key"}, TOGETHER),
        ({"temporal_tls": False, "temporal_api_key": API_KEY}, "only sent over TLS"),
    ],
)
def test_incomplete_tls_settings_are_refused(tmp_path: Path, given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        settings(tmp_path, "temporal:7233", **given)
    assert API_KEY not in str(refused.value)


def test_an_unreadable_or_non_pem_file_refuses_the_engine_naming_its_setting(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(
        ConfigurationError, match=r"cannot read MAHAVISHNU_TEMPORAL_TLS_CA_FILE .*missing-ca\.pem"
    ):
        temporal_config(settings(tmp_path, "temporal:7233", temporal_tls=True, temporal_tls_ca_file=missing))
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match=r"MAHAVISHNU_TEMPORAL_TLS_CA_FILE .* holds no PEM block"):
        temporal_config(settings(tmp_path, "temporal:7233", temporal_tls=True, temporal_tls_ca_file=garbage))

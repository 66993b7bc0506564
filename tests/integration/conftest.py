from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_tracing import Collector
from tests.support.repos import make_repos, standard_specs
from tests.support.server import RunningServer, base_env, start_server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mahavishnu")


@pytest.fixture(scope="module")
def manifest(workdir: Path) -> Path:
    return make_repos(workdir, standard_specs())


@pytest.fixture(scope="module")
def open_server(workdir: Path, manifest: Path) -> Iterator[RunningServer]:
    """Development defaults: no auth on loopback; rate limits raised so tests never trip them."""
    server = start_server(workdir, base_env(workdir, manifest))
    yield server
    server.stop()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A real OTLP/HTTP receiver on loopback for the test, shut down after it."""
    c = Collector()
    yield c
    c.server.shutdown()

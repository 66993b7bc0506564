"""The container group: one real engine for the group (started from nothing when needed, and
stopped again after the group's last test), and the image built from deploy/Dockerfile. Off CI
without an engine (no Docker, not root) every test here skips with the reason; with CI=true they
fail instead."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI
from tests.container.engine import FIGURES, ROOT, Engine, EngineUnavailable, start_engine, stop_engine

ORDER = ("test_image.py", "test_deploy_script.py", "test_compose.py")
"""The image first (everything else builds on it), then the deploy script, then compose."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slots = [
        i for i, item in enumerate(items) if item.path.name in ORDER and item.path.parent.name == "container"
    ]
    ordered = sorted((items[i] for i in slots), key=lambda item: ORDER.index(item.path.name))
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="package")
def engine() -> Iterator[Engine]:
    try:
        started = time.monotonic()
        running = start_engine()
        FIGURES["engine up"] = f"{time.monotonic() - started:.1f} s ({running.docker_host})"
    except EngineUnavailable as error:
        if IN_CI:
            pytest.fail(f"{error} (CI=true: the container tests must run)")
        pytest.skip(f"{error}; run scripts/local_engine.sh up (as root, or with Docker running)")
    yield running
    stop_engine(running)


@pytest.fixture(scope="package")
def image(engine: Engine) -> Iterator[str]:
    """The project's image, built from deploy/Dockerfile unchanged, as the guide builds it."""
    tag = f"mahavishnu:ctest-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    engine.docker(
        "build", "--tag", tag, "--file", str(ROOT / "deploy" / "Dockerfile"), str(ROOT), timeout=900
    )
    FIGURES["image build"] = f"{time.monotonic() - started:.1f} s"
    FIGURES["image size"] = f"{engine.image_size(tag) / 1e6:.0f} MB ({tag})"
    yield tag
    engine.docker("rmi", tag, check=False)


@pytest.fixture
def unique() -> str:
    """A suffix for container, volume and network names: runs never collide."""
    return uuid.uuid4().hex[:8]

"""scripts/deploy_production.sh docker against the real engine: a good release goes through the
8 steps and serves the new image; a bad one (its smoke tests fail, or it never becomes ready) is
rolled back automatically to the previous image, which serves again, and the log says so.

The service is first installed as the guide's first install does (db upgrade, then `docker run`
with the script's own arguments). Bad releases are real images the script builds itself, from a
copy of the scripts whose deploy/Dockerfile is the good image plus one bad line."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.container.engine import FIGURES, ROOT, Engine, wait_http
from tests.support.server import SECRET, free_port
from tests.support.tokens import claims, hs256

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

HARDENING = "--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --memory 512m"
SCRIPTS = ("deploy_production.sh", "smoke_tests.sh")


@dataclass
class Service:
    """The deployed service: a standalone container, as the script's docker target manages it."""

    name: str
    repository: str
    port: int
    candidate_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def volume(self) -> str:
        return f"{self.name}-data"


@dataclass
class DeployRun:
    code: int
    out: str
    rollback_started: float | None
    """time.monotonic() when the script printed 'Rolling back to'."""

    def log_text(self) -> str:
        line = next(x for x in self.out.splitlines() if x.startswith("Log:"))
        return Path(line.split(maxsplit=1)[1]).read_text()


@pytest.fixture
def service(engine: Engine, image: str, unique: str) -> Iterator[Service]:
    """Mahavishnu installed and serving `image` (tagged REPOSITORY:initial), the guide's way."""
    svc = Service(f"ctest-svc-{unique}", f"ctest-mahavishnu-{unique}", free_port(), free_port())
    initial = f"{svc.repository}:initial"
    engine.docker("tag", image, initial)
    engine.docker("run", "--rm", "--volume", f"{svc.volume}:/data", initial, "mahavishnu", "db", "upgrade")
    engine.docker(
        "run",
        "--detach",
        "--name",
        svc.name,
        "--restart",
        "unless-stopped",
        "--publish",
        f"127.0.0.1:{svc.port}:8680",
        "--volume",
        f"{svc.volume}:/data",
        "--env",
        "MAHAVISHNU_AUTH_SECRET",
        *HARDENING.split(),
        initial,
        env={"MAHAVISHNU_AUTH_SECRET": SECRET},
    )
    wait_http(f"{svc.url}/ready", timeout=60)
    yield svc
    engine.remove(svc.name, f"{svc.name}-candidate")
    engine.docker("volume", "rm", svc.volume, check=False)
    tags = engine.docker("images", svc.repository, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    engine.docker("rmi", *tags, check=False)


def release_tree(folder: Path, good_image: str, bad_line: str) -> Path:
    """The deploy scripts beside a deploy/Dockerfile that makes the good image bad with one line
    (building on the good image keeps the bad build to a second)."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "deploy").mkdir()
    for name in SCRIPTS:
        shutil.copy2(ROOT / "scripts" / name, folder / "scripts" / name)
    (folder / "deploy" / "Dockerfile").write_text(f"FROM {good_image}\n{bad_line}\n")
    return folder


def deploy(engine: Engine, svc: Service, tree: Path, log_dir: Path, **extra: str) -> DeployRun:
    """Run tree/scripts/deploy_production.sh docker, noting when its rollback began."""
    env = engine.env(
        {
            "NO_COLOR": "1",
            "SERVICE_NAME": svc.name,
            "IMAGE": svc.repository,
            "DOCKER_PORT": str(svc.port),
            "CANDIDATE_PORT": str(svc.candidate_port),
            "DOCKER_VOLUME": svc.volume,
            "DOCKER_RUN_ARGS": HARDENING,
            "MAHAVISHNU_AUTH_SECRET": SECRET,
            "SMOKE_TOKEN": hs256(claims()),
            "READINESS_CMD": f"docker exec {svc.name} mahavishnu readiness --json --min-score 70",
            "BACKUP_CMD": f"docker exec {svc.name} mahavishnu backup create",
            # The test suite is what runs this test: step 4 must not start it again.
            "TEST_CMD": "true",
            "HEALTH_POLLS": "3",
            "HEALTH_INTERVAL": "1",
            "READY_TIMEOUT": "20",
            "READY_INTERVAL": "1",
            "LOG_DIR": str(log_dir),
            **extra,
        }
    )
    process = subprocess.Popen(
        [str(tree / "scripts" / "deploy_production.sh"), "docker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    rollback_started: float | None = None
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Rolling back to") and rollback_started is None:
            rollback_started = time.monotonic()
    return DeployRun(process.wait(timeout=600), "".join(lines), rollback_started)


def running_image(engine: Engine, svc: Service) -> str:
    return str(engine.inspect(svc.name)["Config"]["Image"])


def candidate_left(engine: Engine, svc: Service) -> bool:
    listed = engine.docker("ps", "--all", "--quiet", "--filter", f"name=^{svc.name}-candidate$")
    return bool(listed.stdout.strip())


def assert_serves(svc: Service) -> None:
    health = httpx.get(f"{svc.url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"


def test_a_good_release_goes_through_the_eight_steps_and_serves_the_new_image(
    engine: Engine, service: Service, tmp_path: Path
) -> None:
    run = deploy(engine, service, ROOT, tmp_path)
    assert run.code == 0, run.out
    for step in range(1, 9):
        assert f"[{step}/8]" in run.out
    assert "Result:        DEPLOYED" in run.out
    assert "All smoke tests PASSED" in run.out
    new_image = running_image(engine, service)
    assert new_image.startswith(f"{service.repository}:")
    assert new_image != f"{service.repository}:initial"
    assert f"New image:     {new_image}" in run.out
    assert not candidate_left(engine, service)
    assert_serves(service)
    # Step 2 took a real backup inside the running container, before anything changed; the new
    # container lists it (same /data volume).
    backup_id = re.search(r"^id: ([0-9a-f]{12})", run.out, re.MULTILINE)
    assert backup_id, run.out
    backups = engine.docker("exec", service.name, "mahavishnu", "backup", "list").stdout
    assert backup_id.group(1)[:8] in backups


@pytest.mark.parametrize(
    ("bad_line", "reason", "swapped"),
    [
        # Tokens for the issuer `mahavishnu` are refused: /health answers, /mcp does not.
        ("ENV MAHAVISHNU_AUTH_ISSUER=another-issuer", "smoke tests failed against the candidate", False),
        ('CMD ["sleep", "infinity"]', "the candidate did not become ready", False),
        # Serves once (the candidate), then never again: the swapped-in container is replaced.
        (
            'CMD ["sh", "-c", "test ! -e /data/bad-release && touch /data/bad-release'
            ' && exec mahavishnu serve --host 0.0.0.0"]',
            "container did not become ready",
            True,
        ),
    ],
    ids=["smoke-tests-fail", "never-ready", "fails-after-the-swap"],
)
def test_a_bad_release_is_rolled_back_to_the_previous_image(
    engine: Engine, image: str, service: Service, tmp_path: Path, bad_line: str, reason: str, swapped: bool
) -> None:
    tree = release_tree(tmp_path / "tree", image, bad_line)
    run = deploy(engine, service, tree, tmp_path / "logs")
    assert run.code == 3, run.out
    previous = f"{service.repository}:initial"
    assert re.search(rf"Result: +ROLLED BACK to {re.escape(previous)}: .*{reason}", run.out), run.out
    assert re.search(rf"Rolling back to {re.escape(previous)} \(.*{reason}\)", run.log_text())
    # Before the swap the production container is left alone; after it, it is run again.
    assert ("container was not replaced" in run.out) is not swapped
    assert running_image(engine, service) == previous
    assert not candidate_left(engine, service)
    assert run.rollback_started is not None
    wait_http(f"{service.url}/health", timeout=60)
    serving_again = time.monotonic() - run.rollback_started
    assert_serves(service)
    FIGURES[f"rollback ({reason})"] = (
        f"{serving_again:.1f} s from 'Rolling back' to the previous image serving"
    )

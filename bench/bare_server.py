"""The baseline for mcp_throughput.py: Mahavishnu's repository tools on the bare official SDK.

Same tool functions (RepoTools over a ManifestStore of the same manifest file), same names,
signatures, titles and annotations, served the way the SDK documents it: `MCPServer` →
`streamable_http_app(stateless_http=True, json_response=True)` → uvicorn. No auth, rate
limits, metrics, JSON logs or tracing provider, so the gap to Mahavishnu is the platform's cost.

    python bench/bare_server.py --port 18701 --repos /tmp/x/repos.yaml --allowed-root /tmp/x
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp_types import ToolAnnotations

from mahavishnu import __version__
from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.service import INSTRUCTIONS
from mahavishnu.orchestrator.settings import DEFAULT_ROLES
from mahavishnu.orchestrator.tools import RepoTools


def build(repos_file: Path, allowed_root: Path) -> MCPServer:
    store = ManifestStore(repos_file, allowed_roots=[allowed_root], roles=DEFAULT_ROLES)
    if not store.reload_if_changed():
        raise SystemExit(f"cannot load the manifest {repos_file}")
    # The SDK's own per-request INFO lines are silenced in Mahavishnu too (log_level WARNING).
    server: MCPServer = MCPServer(
        name="mahavishnu", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for spec in RepoTools(store).specs():
        server.add_tool(
            spec.fn,
            name=spec.name,
            title=spec.title,
            annotations=ToolAnnotations(read_only_hint=spec.read_only, open_world_hint=False),
            structured_output=True,
        )

    @server.tool(
        title="Service health", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False)
    )
    async def get_health() -> dict[str, Any]:
        """Report this server's health: overall status (healthy, degraded or unhealthy), version,
        uptime, and the result of each component check (manifest, rate limiting, database...)."""
        return {"status": "healthy", "version": __version__, "repos": len(store.manifest.repos)}

    return server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repos", type=Path, required=True, help="the repository manifest")
    parser.add_argument("--allowed-root", type=Path, required=True, help="folder every repo path is inside")
    args = parser.parse_args()
    app = build(args.repos, args.allowed_root).streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()

"""The baseline for mcp_throughput.py: Mahavishnu's tools on the bare official SDK.

The tool functions come from Mahavishnu's own service (so names, signatures, schemas and the
data read from the manifest file are the same, and stay the same as tools are added); they
are served the way the SDK documents it: `MCPServer` → `streamable_http_app(stateless_http=True,
json_response=True)` → uvicorn. No auth, rate limits, metrics, JSON logs, tracer provider or
per-tool wrapper, and no background jobs, so the gap to Mahavishnu is the platform's cost.
Settings (manifest path, allowed roots) are read from the environment as `mahavishnu serve` does.

    MAHAVISHNU_REPOS_FILE=/tmp/x/repos.yaml MAHAVISHNU_ALLOWED_ROOTS='["/tmp/x"]' \
        python bench/bare_server.py --port 18701
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp_types import ToolAnnotations

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.observability import Metrics
from mahavishnu.wiring import create_mahavishnu


def build() -> MCPServer:
    service = create_mahavishnu(MahavishnuSettings.load(), Metrics())
    # The SDK's own per-request INFO lines are silenced in Mahavishnu too (log_level WARNING).
    server: MCPServer = MCPServer(
        name=service.name, version=service.version, instructions=service.instructions, log_level="WARNING"
    )
    for spec in service.tools:
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
        return {"status": "healthy", "service": service.name, "version": service.version}

    return server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = build().streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()

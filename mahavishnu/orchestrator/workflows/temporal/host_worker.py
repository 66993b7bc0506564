"""`mahavishnu worker [--host NAME]`: a build host's worker for the Temporal engine.

It serves one runs queue (`PREFIX-runs-NAME`, or the shared `PREFIX-runs` without a host) with
the same process runner as the local engine, and needs no database credentials: outcomes go back
through Temporal, and the Mahavishnu replicas record them. SIGTERM or SIGINT stops it gracefully
(Temporal retries the batches it was running on another worker of the host).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import prometheus_client

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.temporal.batches import BatchRunner
from mahavishnu.orchestrator.workflows.temporal.config import TemporalConfig, runs_queue
from mahavishnu.orchestrator.workflows.temporal.engine import connect, runs_worker
from mahavishnu.platform.observability import Metrics, get_logger

__all__ = ["serve_host"]

log = get_logger("mahavishnu.worker")


async def serve_host(
    settings: MahavishnuSettings,
    config: TemporalConfig,
    engine_config: EngineConfig,
    host: str | None,
    *,
    metrics_address: tuple[str, int] | None = None,
) -> None:
    """Serve the host's runs queue until SIGTERM or SIGINT; with `metrics_address`, its run
    metrics (durations, runs executing, the process) on http://HOST:PORT/metrics."""
    client = await connect(config)
    metrics = Metrics()
    if metrics_address is not None:
        prometheus_client.start_http_server(metrics_address[1], metrics_address[0], registry=metrics.registry)
    runner = BatchRunner(
        engine_config,
        settings.workflow_definitions(),
        WorkflowMetrics(metrics),
        heartbeat_seconds=config.heartbeat_seconds,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    name = f"worker_{socket.gethostname()}_{os.getpid()}"
    async with runner.serving(name), runs_worker(client, config, runner, host=host):
        log.info(
            "worker_started",
            task_queue=runs_queue(config.task_queue_prefix, host),
            temporal=config.address,
            slots=runner.slots,
        )
        await stop.wait()
        log.info("worker_stopping")

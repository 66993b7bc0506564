"""`TemporalEngine`: the engine seam (`ports.WorkflowEngine`) on a Temporal cluster.

Each Mahavishnu workflow is one Temporal workflow (`workflow.py`, id `mahavishnu-ID`), started
on submit. Every replica serves the control queue (the database activities, `control.py`) and,
unless told otherwise, the shared runs queue (repositories without a `host`); build hosts serve
their own runs queue with `mahavishnu worker --host NAME` (`host_worker.py`).

The database stays the record and the start is its consequence: a workflow whose rows were
written but whose start was lost (Temporal down at the time), or that Temporal closed behind
Mahavishnu's back (terminated, timed out), is started again by the reconciler (`heal`), which
every replica runs on a schedule. A new start settles what the old one left (`control.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode, TLSConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from mahavishnu.orchestrator.workflows import records
from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.orchestrator.workflows.local.closes import Closes
from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.metrics import WorkflowMetrics
from mahavishnu.orchestrator.workflows.models import Workflow
from mahavishnu.orchestrator.workflows.records import Closed
from mahavishnu.orchestrator.workflows.temporal.batches import BatchRunner
from mahavishnu.orchestrator.workflows.temporal.config import TemporalConfig, runs_queue
from mahavishnu.orchestrator.workflows.temporal.control import ControlActivities
from mahavishnu.orchestrator.workflows.temporal.wire import WorkflowInput
from mahavishnu.orchestrator.workflows.temporal.workflow import WAKE, RepoRunsWorkflow
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import get_logger

__all__ = ["TemporalEngine", "connect", "temporal_id"]

log = get_logger("mahavishnu.engine")
RECONCILE_BATCH = 500
"""Open workflows checked against Temporal per reconcile round: the oldest first, then each
round the next ones, round and round."""


def temporal_id(workflow_id: str) -> str:
    return f"mahavishnu-{workflow_id}"


async def connect(config: TemporalConfig) -> Client:
    """A client of the cluster, or a `ConnectionError` that names the address."""
    tls: bool | TLSConfig = False
    if config.tls is not None:
        tls = TLSConfig(
            server_root_ca_cert=config.tls.ca,
            client_cert=config.tls.cert,
            client_private_key=config.tls.key,
            domain=config.tls.server_name,
        )
    try:
        return await Client.connect(
            config.address, namespace=config.namespace, api_key=config.api_key, tls=tls
        )
    except RuntimeError as exc:
        raise ConnectionError(f"cannot reach Temporal at {config.address}: {exc}") from exc


class TemporalEngine:
    def __init__(
        self,
        db: Database,
        config: TemporalConfig,
        engine_config: EngineConfig,
        definitions: Mapping[str, WorkflowDefinition],
        metrics: WorkflowMetrics,
        *,
        host_of: Callable[[str], str | None] = lambda _repo: None,
    ) -> None:
        self._db = db
        self._config = config
        self._engine_config = engine_config
        self._definitions = definitions
        self._metrics = metrics
        self._closes = Closes(metrics)
        self._control = ControlActivities(
            db,
            config,
            definitions,
            self._closes,
            circuit_threshold=engine_config.circuit_failure_threshold,
            circuit_cooldown_seconds=engine_config.circuit_cooldown_seconds,
            host_of=host_of,
        )
        self._client: Client | None = None
        self.connected = False
        """Connected to Temporal and serving (the replica's health says so)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}"
        self._reconciled_up_to: tuple[datetime, str] | None = None
        """(created_at, id) of the last open workflow the previous reconcile round checked."""

    # --- the seam --------------------------------------------------------------------------
    def submit(self, workflow_id: str) -> None:
        """Start the workflow's Temporal workflow (or find it running); a start that fails is
        logged and made by the reconciler later (the rows are durable)."""
        self._spawn(self._start(workflow_id))

    def cancel(self, workflow_id: str) -> None:
        """Cancel its Temporal workflow: its batches stop their process groups, then it settles."""
        self._spawn(self._cancel(workflow_id))

    def report_closed(self, closed: Sequence[Closed]) -> None:
        self._closes.closed(closed)

    async def until_closed(self, workflow_id: str) -> None:
        await self._closes.until_closed(workflow_id)

    async def heal(self) -> int:
        """Reconcile: every open workflow whose Temporal workflow is not running (its start was
        lost, or it was terminated or timed out) is started again; returns how many."""
        client = self._require_client()
        query = select(Workflow.created_at, Workflow.id).where(Workflow.finished_at.is_(None))
        if self._reconciled_up_to is not None:
            query = query.where(tuple_(Workflow.created_at, Workflow.id) > self._reconciled_up_to)
        async with self._db.session() as session:
            rows = (
                await session.execute(query.order_by(Workflow.created_at, Workflow.id).limit(RECONCILE_BATCH))
            ).all()
        # The next round goes on after these, and back to the oldest once it reached the newest:
        # however many stay open (and running), every one is checked in turn.
        self._reconciled_up_to = (rows[-1][0], rows[-1][1]) if len(rows) == RECONCILE_BATCH else None
        started = 0
        for _, workflow_id in rows:
            state = await self._state(client, workflow_id)
            if state is WorkflowExecutionStatus.RUNNING:
                continue
            if state is None:  # never started: its start was lost, or made before this engine ran
                log.info("temporal_workflow_started", workflow_id=workflow_id)
            else:
                log.warning(
                    "temporal_workflow_restarted", workflow_id=workflow_id, temporal_status=state.name
                )
            await self._start(workflow_id)
            started += 1
        return started

    @contextlib.asynccontextmanager
    async def running(self, workflows: Collection[str] | None = None) -> AsyncIterator[TemporalEngine]:
        """Serve the control queue (and the shared runs queue, `serve_runs`) for the block.
        `workflows` is not needed: Temporal routes each workflow's activities itself."""
        self._client = await connect(self._config)
        self.connected = True
        runner = BatchRunner(
            self._engine_config,
            self._definitions,
            self._metrics,
            heartbeat_seconds=self._config.heartbeat_seconds,
        )
        control = Worker(
            self._client,
            task_queue=self._config.control_queue,
            workflows=[RepoRunsWorkflow],
            activities=self._control.activities(),
            # The workflow module is deterministic; its package (SQLAlchemy models and all) is
            # imported once, not again inside the sandbox for every workflow.
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules("mahavishnu")
            ),
        )
        async with contextlib.AsyncExitStack() as stack:
            workers = [control]
            if self._config.serve_runs:
                await stack.enter_async_context(runner.serving(self.instance_id.replace(":", "_")))
                workers.append(runs_worker(self._client, self._config, runner, host=None))
            for worker in workers:
                await stack.enter_async_context(worker)
            maintain = asyncio.create_task(self._maintain_loop(), name="temporal-maintain")
            try:
                yield self
            finally:
                self.connected = False
                maintain.cancel()
                for task in (maintain, *self._tasks):
                    task.cancel()
                await asyncio.gather(maintain, *self._tasks, return_exceptions=True)

    # --- inside ------------------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _require_client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the Temporal engine is not running")
        return self._client

    def _input(self, workflow_id: str) -> WorkflowInput:
        return WorkflowInput(
            workflow_id=workflow_id,
            control_queue=self._config.control_queue,
            task_queue_prefix=self._config.task_queue_prefix,
            heartbeat_seconds=self._config.heartbeat_seconds,
            host_timeout_seconds=self._config.host_timeout_seconds,
        )

    async def _start(self, workflow_id: str) -> None:
        try:
            await self._require_client().start_workflow(
                RepoRunsWorkflow.run,
                self._input(workflow_id),
                id=temporal_id(workflow_id),
                task_queue=self._config.control_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                # Signal-with-start: a workflow already running hears of the new runs at once.
                start_signal=WAKE,
            )
        except (RPCError, RuntimeError) as exc:
            log.error("temporal_start_failed", workflow_id=workflow_id, error=str(exc)[:200])

    async def _cancel(self, workflow_id: str) -> None:
        try:
            await self._require_client().get_workflow_handle(temporal_id(workflow_id)).cancel()
        except (RPCError, RuntimeError) as exc:
            log.warning("temporal_cancel_failed", workflow_id=workflow_id, error=str(exc)[:200])

    async def _state(self, client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
        """Its Temporal workflow's status, None when Temporal never heard of it."""
        try:
            described = await client.get_workflow_handle(temporal_id(workflow_id)).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return described.status

    async def _maintain_loop(self) -> None:
        while True:
            try:
                await self._maintain()
            except Exception:
                log.exception("maintenance_failed")
            await asyncio.sleep(self._config.reconcile_seconds)

    async def _maintain(self) -> None:
        """Gauges, the sweep that closes workflows every other check missed, and reconciling."""
        async with self._db.session() as session:
            closed = await records.close_settled_workflows(session, datetime.now(UTC))
            gauges = await records.gauges(session)
        self.report_closed(closed)
        self._metrics.queue_depth.set(gauges.queued)
        self._metrics.dead_letters.set(gauges.dead_letters)
        self._metrics.circuit_open.set(gauges.open_circuits)
        await self.heal()


def runs_worker(client: Client, config: TemporalConfig, runner: BatchRunner, *, host: str | None) -> Worker:
    """A worker of one runs queue: at most one batch per slot (each runs one run at a time)."""
    return Worker(
        client,
        task_queue=runs_queue(config.task_queue_prefix, host),
        activities=[runner.run_batch],
        max_concurrent_activities=runner.slots,
    )

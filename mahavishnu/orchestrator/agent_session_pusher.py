"""Writing finished agent runs to Session-Buddy, in the background: each entry of the outbox
(`workflows/agent_session_outbox.py`) becomes one session through Session-Buddy's MCP tools
(`mcp_peer.py`), and is deleted once the session is written. A workflow never waits for any
of it: the end of its run only wrote an outbox row.

One run, one session:

    start_session   project: the repository's name, repo: its path, goal: the prompt
    store_memory    the prompt (kind note), and the outcome with the output tail (kind fact),
                    both tagged mahavishnu, agent and the run's status, in that session
    end_session     the hand-off the next session of that repository starts from: the status,
                    exit code and the end of the output

A delivery may be cut anywhere (a crash, an outage) and is then tried again from the start,
without duplicates: the session started is kept on the entry before anything is written into
it, so a retry continues it; each memory carries an idempotency key made of the run and its
attempt, so a retry of a store answers the first; a session already ended is not ended again.
(Only a crash between Session-Buddy's start of a session and this side's note of it leaves an
empty session behind; the run's memories are still written once, into the next.) Failures
back off and retry as every pusher does (`platform/push_loop.py`); nothing is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NamedTuple

from opentelemetry import trace
from prometheus_client import Counter, Gauge

from mahavishnu.orchestrator.mcp_peer import McpPeer, PeerTools
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.orchestrator.workflows import agent_session_outbox
from mahavishnu.orchestrator.workflows.agent_session_outbox import AgentRun
from mahavishnu.platform.db import Database
from mahavishnu.platform.errors import NotFoundError
from mahavishnu.platform.ids import new_id
from mahavishnu.platform.observability import Metrics, get_logger, trace_context
from mahavishnu.platform.push_loop import PushLoop

__all__ = ["AgentSessionPusher", "SessionMetrics", "SessionTexts", "push_agent_sessions", "session_texts"]

log = get_logger("mahavishnu.agent_session_pusher")
tracer = trace.get_tracer("mahavishnu.agent_session_pusher")

TEXT_CHARS = 8000
"""Of the prompt and of the output tail, at most this many characters go to Session-Buddy
(the prompt's head, the output's end): within its default limit of 16,000 per text, headers
included, so no run is refused for its size."""
HANDOFF_OUTPUT_CHARS = 600
"""The end of the output in the hand-off note the repository's next session starts from."""
TAGS = ("mahavishnu", "agent")
REPO_CHARS = 500
"""Session-Buddy's longest `repo`: a longer path is given as the repository's name."""
LEASE_SECONDS = 300.0
"""A delivery is a handful of calls of at most 30 s each: well within this."""


class SessionMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.lag = Gauge(
            "mahavishnu_session_buddy_outbox_lag",
            "Finished agent runs whose session Session-Buddy does not have yet.",
            registry=r,
        )
        self.written = Counter(
            "mahavishnu_session_buddy_sessions_written", "Agent runs written to Session-Buddy.", registry=r
        )
        self.failures = Counter(
            "mahavishnu_session_buddy_push_failures", "Deliveries to Session-Buddy that failed.", registry=r
        )


class AgentSessionPusher:
    """One process's pusher; those of other replicas on the same database take other entries."""

    def __init__(
        self,
        db: Database,
        peer: McpPeer,
        metrics: SessionMetrics,
        *,
        batch_size: int = 20,
        poll_seconds: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._peer = peer
        self._metrics = metrics
        self._owner = new_id()
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._sleep = sleep

    async def push_once(self) -> int:
        """Write the oldest entries this pusher could lease, one session each, settling each
        once written; answers how many it settled. Raises what the first failure raised (the
        entries before it stay settled, the rest wait for the next try)."""
        runs = await agent_session_outbox.claim(
            self._db,
            owner=self._owner,
            limit=self._batch_size,
            lease_seconds=LEASE_SECONDS,
            now=datetime.now(UTC),
        )
        for run in runs:
            with tracer.start_as_current_span(
                "agent_session session-buddy", context=trace_context(run.trace_parent)
            ) as span:
                span.set_attributes({"mahavishnu.run_id": run.run_id, "mahavishnu.repo": run.repo})
                async with self._peer.connect() as tools:  # in the span: its requests carry it
                    await self._write(tools, run)
            await agent_session_outbox.settle(self._db, run.entry_id)
            self._metrics.written.inc()
        return len(runs)

    async def run(self) -> None:
        """Push until cancelled (`PushLoop`)."""
        await PushLoop(
            "session_buddy_sessions",
            self.push_once,
            self._measure,
            self._metrics.failures,
            log,
            poll_seconds=self._poll,
            sleep=self._sleep,
        ).run()

    async def _measure(self) -> None:
        self._metrics.lag.set(await agent_session_outbox.backlog(self._db))

    async def _write(self, tools: PeerTools, run: AgentRun) -> None:
        texts = session_texts(run)
        session_id = run.session_id
        ended = False
        if session_id is not None:  # a retried delivery: continue what the last try started
            try:
                found = await tools.call("get_session", {"session_id": session_id})
                ended = found["session"]["status"] == "ended"
            except NotFoundError:  # gone from Session-Buddy (restored from an older backup)
                session_id = None
        if session_id is None:
            repo = run.repo_path if len(run.repo_path) <= REPO_CHARS else run.repo
            started = await tools.call(
                "start_session", {"project": run.repo, "repo": repo, "goal": texts.goal}
            )
            session_id = str(started["session"]["id"])
            await agent_session_outbox.started(self._db, run.entry_id, session_id)
        for part, kind, content in (("prompt", "note", texts.prompt), ("outcome", "fact", texts.outcome)):
            await tools.call(
                "store_memory",
                {
                    "content": content,
                    "kind": kind,
                    "tags": [*TAGS, part, run.status],
                    "project": run.repo,
                    "session_id": session_id,
                    "idempotency_key": f"mahavishnu:{run.run_id}:{run.attempt}:{part}",
                },
            )
        if not ended:
            await tools.call("end_session", {"session_id": session_id, "summary": texts.handoff})


class SessionTexts(NamedTuple):
    goal: str
    prompt: str
    outcome: str
    handoff: str


def session_texts(run: AgentRun) -> SessionTexts:
    """The goal, the two memories and the hand-off of a run's session. Each memory names the
    run: Session-Buddy keeps one memory per content, and two runs' prompts are often alike."""
    where = f"repository {run.repo} (workflow {run.workflow_id}, run {run.run_id}, attempt {run.attempt})"
    prompt = _head(run.prompt.strip() or "(empty prompt)")
    ending = f"{run.status}, exit code {'none' if run.exit_code is None else run.exit_code}"
    if run.duration_seconds is not None:
        ending += f", after {run.duration_seconds:.1f} s"
    output = _tail((run.output_tail or "").strip()) or "(no output)"
    outcome = f"Mahavishnu's agent run in {where} ended {ending}, at {run.finished_at.isoformat()}."
    if run.error:
        outcome += f"\nError: {_head(run.error)}"
    handoff = f"Mahavishnu's agent run in {run.repo} ended {ending}."
    if run.error:
        handoff += f" Error: {run.error[:HANDOFF_OUTPUT_CHARS]}"
    return SessionTexts(
        goal=prompt,
        prompt=f"Mahavishnu asked the agent, in {where}:\n{prompt}",
        outcome=f"{outcome}\nOutput (its end):\n{output}",
        handoff=f"{handoff}\nThe output ended with:\n{output[-HANDOFF_OUTPUT_CHARS:]}",
    )


def _head(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + " [...]"


def _tail(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else "[...] " + text[-TEXT_CHARS:]


async def push_agent_sessions(db: Database, settings: MahavishnuSettings, metrics: SessionMetrics) -> None:
    """Push as the settings say until cancelled; nothing when `session_buddy_url` is unset."""
    if settings.session_buddy_url is None:
        log.info("session_buddy_push_disabled", reason="MAHAVISHNU_SESSION_BUDDY_URL is not set")
        return
    peer = McpPeer(
        "session-buddy",
        settings.session_buddy_url,
        token=settings.session_buddy_token,
        credentials_in="MAHAVISHNU_SESSION_BUDDY_TOKEN",
    )
    await AgentSessionPusher(db, peer, metrics).run()

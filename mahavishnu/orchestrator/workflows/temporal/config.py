"""The Temporal engine's knobs, taken from settings once."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TemporalConfig", "TemporalTls", "runs_queue"]


@dataclass(frozen=True, slots=True)
class TemporalTls:
    """TLS to the frontend: PEM bytes read from the settings' files when the engine is built."""

    ca: bytes | None = None
    """The frontend's CA; None: the system's roots."""
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    """A client certificate and its key, for mTLS (both or neither)."""
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class TemporalConfig:
    address: str
    """host:port of the Temporal frontend."""
    namespace: str
    task_queue_prefix: str
    """Queues are `PREFIX-control` (the replicas' database activities) and `PREFIX-runs` or
    `PREFIX-runs-HOST` (the runs of repositories without a host, or on HOST)."""
    batch_size: int
    """Runs per batch activity: one activity per run costs 5-30 ms of Temporal each."""
    max_batches: int
    """Batches of one workflow in flight at once (a workflow's own `max_concurrency` is lower)."""
    heartbeat_seconds: float
    """A batch whose worker stops heartbeating for this long is retried elsewhere."""
    host_timeout_seconds: float
    """A batch no worker of its host takes within this long fails its runs: "host unavailable"."""
    serve_runs: bool
    """The replica also executes runs of repositories without a host (one process does it all)."""
    reconcile_seconds: float
    """How often a replica checks open workflows against Temporal (`TemporalEngine.heal`)."""
    tls: TemporalTls | None = None
    """None: plaintext (a cluster inside a private network, the dev server)."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as a bearer token with every call (Temporal Cloud)."""

    @property
    def control_queue(self) -> str:
        return f"{self.task_queue_prefix}-control"


def runs_queue(prefix: str, host: str | None) -> str:
    """The task queue the runs of a host's repositories go to (no host: the shared one)."""
    return f"{prefix}-runs" if host is None else f"{prefix}-runs-{host}"

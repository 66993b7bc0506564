"""The local engine's knobs, in a module of their own so its parts share them without a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EngineConfig"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's knobs, taken from settings once."""

    max_concurrent_runs: int
    kill_grace_seconds: float
    output_tail_bytes: int
    log_max_bytes: int
    log_dir: Path
    circuit_failure_threshold: int
    circuit_cooldown_seconds: float
    heal_policy: str
    lease_seconds: float
    poll_seconds: float
    groups_dir: Path | None = None
    """Where engines of this host keep the ledgers of their process groups (`groups.GroupGuard`);
    unset means `engines` beside the log folder (in the data folder, as `serve` sets it up).
    Engines sharing a database on one host should share it too, so each can heal the others."""

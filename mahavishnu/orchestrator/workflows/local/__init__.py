"""The local engine: runs a workflow's repo runs as subprocesses on this host (see `engine.py`).

Its parts import only the engine-neutral modules above them (`records`, `decisions`, `models`),
never the service; `groups.py` imports only the standard library, as it also runs on its own as
the reaper (`python -I -S groups.py reap LEDGER`).
"""

from __future__ import annotations

from mahavishnu.orchestrator.workflows.local.config import EngineConfig
from mahavishnu.orchestrator.workflows.local.engine import LocalEngine

__all__ = ["EngineConfig", "LocalEngine"]

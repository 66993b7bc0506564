"""The Temporal engine: Mahavishnu's workflows executed by a Temporal cluster, across hosts.

`engine.TemporalEngine` implements the engine seam (`ports.WorkflowEngine`); `workflow.py` is
the Temporal workflow (deterministic: it only decides what to ask for next); `control.py` holds
the activities that read and write Mahavishnu's database (served by the Mahavishnu replicas);
`batches.py` the activity that executes runs (served by `mahavishnu worker` on each build host,
which needs no database credentials); `wire.py` the values passed between them.
"""

from mahavishnu.orchestrator.workflows.temporal.config import TemporalConfig, TemporalTls
from mahavishnu.orchestrator.workflows.temporal.engine import TemporalEngine

__all__ = ["TemporalConfig", "TemporalEngine", "TemporalTls"]

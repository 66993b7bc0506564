"""A service as ops commands see it: its loaded settings plus what only that service knows.

Ops serve every service and import none; the composition root (`mahavishnu.cli`, through
`mahavishnu.wiring`) builds one of these per `--service NAME`, so `backup` and `readiness`
work on any service in the CLI's table. Light on purpose: the CLI imports it for `--help`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mahavishnu.platform.settings import PlatformSettings

if TYPE_CHECKING:
    from mahavishnu.ops.readiness import ReadinessCheck

__all__ = ["ServiceOps", "ServiceOpsResolver"]


@dataclass(frozen=True)
class ServiceOps:
    settings: PlatformSettings
    backup_files: Mapping[str, Path] = field(default_factory=dict)
    """Files of the service's own to put in each archive, by their name there."""
    readiness_checks: Sequence[ReadinessCheck] = ()
    """Checks only this service needs, run after the shared ones."""


ServiceOpsResolver = Callable[[str], ServiceOps]
"""Service name → its `ServiceOps`; raises `typer.Exit` (with a message) for an unknown name."""

"""Session-Buddy's admin tools: what an operator of the whole store does, across tenants."""

from __future__ import annotations

from collections.abc import Sequence

from mahavishnu.platform.mcp import ToolSpec
from mahavishnu.session_buddy.rotator import RotationStatus, Rotator

__all__ = ["AdminTools"]


class AdminTools:
    def __init__(self, rotator: Rotator) -> None:
        self._rotator = rotator

    def specs(self) -> Sequence[ToolSpec]:
        return [
            ToolSpec(self.rotate_encryption_key, min_role="admin", read_only=False, title="Rotate the key"),
        ]

    async def rotate_encryption_key(self) -> RotationStatus:
        """Re-seal everything stored under an older key with the current one (the first key of
        SESSION_ENCRYPTION_KEY), in the background while the service keeps serving. Call again
        to see the progress; when `remaining` is 0 the older keys can be removed from the
        setting. A start-up with values under an older key starts the sweep by itself."""
        return await self._rotator.start_if_needed()

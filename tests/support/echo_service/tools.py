"""Echo's one tool: plain domain code that takes the caller from the platform, never a token."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import Counter
from sqlalchemy import func, select

from mahavishnu.platform import Database, ToolSpec, current_principal
from tests.support.echo_service.models import EchoMessage


class EchoTools:
    def __init__(self, db: Database, greeting: str, echoed: Counter) -> None:
        self._db = db
        self._greeting = greeting
        self._echoed = echoed

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec(self.echo, read_only=False, title="Echo a text")]

    async def echo(self, text: str) -> dict[str, object]:
        """Store a text and answer it with the greeting, and how many texts are stored."""
        sender = current_principal().subject
        async with self._db.session() as session:
            session.add(EchoMessage(text=text, sender=sender, created_at=datetime.now(UTC)))
            await session.flush()
            count = await session.scalar(select(func.count()).select_from(EchoMessage))
        self._echoed.inc()
        return {"echo": f"{self._greeting}: {text}", "stored": count}

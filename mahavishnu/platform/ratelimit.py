"""Per-caller rate limiting on the `limits` library.

Three sliding windows apply together: a burst window (one second), a
minute and an hour. Storage is in memory by default, or Redis when a URL is
configured so every replica draws on one budget. When Redis cannot be
reached the configured policy decides (fail open or closed), and each
failure is logged and counted.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from mahavishnu.platform.observability import Metrics, get_logger
from mahavishnu.platform.settings import PlatformSettings

__all__ = ["ClientAddressResolver", "Decision", "RateLimiter"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against the budget, with what the headers need."""

    allowed: bool
    limit: int = 0
    remaining: int = 0
    reset_seconds: int = 0
    backend_error: bool = False

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_seconds)


class RateLimiter:
    """Consumes one unit from every window of a key; refuses when any window is spent."""

    def __init__(
        self,
        *,
        per_second: int,
        per_minute: int,
        per_hour: int,
        storage: Storage,
        fail_open: bool,
        metrics: Metrics,
    ) -> None:
        self._items: Sequence[RateLimitItem] = (
            RateLimitItemPerSecond(per_second),
            RateLimitItemPerMinute(per_minute),
            RateLimitItemPerHour(per_hour),
        )
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._fail_open = fail_open
        self._metrics = metrics

    @classmethod
    def from_settings(cls, settings: PlatformSettings, metrics: Metrics) -> RateLimiter | None:
        if not settings.rate_limit_enabled:
            return None
        storage: Storage
        if settings.redis_url is not None:
            storage = RedisStorage(
                settings.redis_url.get_secret_value(),
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=f"{settings.service_name}:ratelimit",
                socket_connect_timeout=0.5,
                socket_timeout=0.5,
            )
        else:
            storage = MemoryStorage()
        return cls(
            per_second=settings.rate_limit_burst,
            per_minute=settings.rate_limit_per_minute,
            per_hour=settings.rate_limit_per_hour,
            storage=storage,
            fail_open=settings.rate_limit_fail_open,
            metrics=metrics,
        )

    @property
    def backend(self) -> str:
        return "redis" if isinstance(self._storage, RedisStorage) else "memory"

    async def check(self, key: str) -> Decision:
        try:
            for item in self._items:
                if not await self._strategy.hit(item, key):
                    stats = await self._strategy.get_window_stats(item, key)
                    self._metrics.rate_limited.inc()
                    return Decision(
                        allowed=False,
                        limit=item.amount,
                        remaining=0,
                        reset_seconds=math.ceil(max(0.0, stats.reset_time - time.time())),
                    )
        except Exception as exc:  # the storage is the only thing that can fail here
            policy = "open" if self._fail_open else "closed"
            self._metrics.rate_limit_backend_errors.labels(policy=policy).inc()
            log.warning(
                "rate_limit_backend_unavailable",
                backend=self.backend,
                policy=policy,
                error=type(exc).__name__,
            )
            return Decision(allowed=self._fail_open, backend_error=True)
        return Decision(allowed=True)

    async def healthy(self) -> bool:
        try:
            return bool(await self._storage.check())
        except Exception:
            return False


class ClientAddressResolver:
    """The caller's address; X-Forwarded-For is believed only from trusted proxies."""

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def resolve(self, peer: str, forwarded_for: str | None) -> str:
        if not forwarded_for or not self._trusted or not self._is_trusted(peer):
            return peer
        # Walk from the nearest hop outwards; the first untrusted address is the client.
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

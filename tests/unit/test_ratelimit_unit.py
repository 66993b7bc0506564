from __future__ import annotations

import pytest
from limits.aio.storage import MemoryStorage

from mahavishnu.platform.observability import Metrics
from mahavishnu.platform.ratelimit import ClientAddressResolver, RateLimiter


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "203.0.113.5", "203.0.113.5"),  # trusted proxy: believe it
        (
            "10.0.0.1",
            "198.51.100.7, 203.0.113.5, 10.0.0.2",
            "203.0.113.5",
        ),  # skip trusted hops from the right
        ("192.0.2.9", "203.0.113.5", "192.0.2.9"),  # untrusted peer: ignore the header
        ("10.0.0.1", "10.0.0.3", "10.0.0.3"),  # only proxies in the chain: the farthest one
        ("10.0.0.1", " , ", "10.0.0.1"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert ClientAddressResolver(["10.0.0.0/8"]).resolve(peer, forwarded) == expected


def test_no_trusted_proxies_means_peer_address() -> None:
    assert ClientAddressResolver([]).resolve("127.0.0.1", "1.2.3.4") == "127.0.0.1"


async def test_burst_window_refuses_then_reports_retry() -> None:
    limiter = RateLimiter(
        per_second=3,
        per_minute=100,
        per_hour=1000,
        storage=MemoryStorage(),
        fail_open=True,
        metrics=Metrics(prefix="t1"),
    )
    decisions = [await limiter.check("k") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].limit == 3
    assert decisions[-1].retry_after >= 1
    assert (await limiter.check("other")).allowed


class BrokenStorage(MemoryStorage):
    async def incr(self, *args: object, **kwargs: object) -> int:
        raise ConnectionError("down")

    async def get(self, *args: object, **kwargs: object) -> int:
        raise ConnectionError("down")

    async def get_sliding_window(self, *args: object, **kwargs: object) -> tuple[int, float, int, float]:
        raise ConnectionError("down")

    async def acquire_sliding_window_entry(self, *args: object, **kwargs: object) -> bool:
        raise ConnectionError("down")


@pytest.mark.parametrize("fail_open", [True, False])
async def test_backend_failure_follows_the_policy(fail_open: bool) -> None:
    metrics = Metrics(prefix=f"t{int(fail_open)}x")
    limiter = RateLimiter(
        per_second=3,
        per_minute=100,
        per_hour=1000,
        storage=BrokenStorage(),
        fail_open=fail_open,
        metrics=metrics,
    )
    decision = await limiter.check("k")
    assert decision.allowed is fail_open
    assert decision.backend_error
    policy = "open" if fail_open else "closed"
    assert metrics.rate_limit_backend_errors.labels(policy=policy)._value.get() == 1

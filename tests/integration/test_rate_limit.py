"""Rate limiting: memory backend, shared Redis budget across replicas, and Redis going away."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_service
from tests.support.client import rpc
from tests.support.server import SECRET, RunningServer, base_env, free_port, start_server
from tests.support.tokens import claims, hs256

LIMITS = {"RATE_LIMIT_PER_MINUTE": "6", "RATE_LIMIT_PER_HOUR": "1000", "RATE_LIMIT_BURST": "100"}


def away_from_window_edge() -> None:
    """The sliding-window counter weighs the previous minute as it fades, so right after a minute
    boundary one extra request can slip through. Tests that count exactly start clear of that edge."""
    if time.time() % 60 > 50:
        time.sleep(60.5 - time.time() % 60)


def statuses(server: RunningServer, count: int, **kwargs: object) -> list[int]:
    return [rpc(server.url, "ping", **kwargs).status_code for _ in range(count)]  # type: ignore[arg-type]


def test_default_limits_let_five_quick_requests_through(workdir: Path, manifest: Path) -> None:
    env = base_env(workdir, manifest)
    for name in ("RATE_LIMIT_PER_MINUTE", "RATE_LIMIT_PER_HOUR", "RATE_LIMIT_BURST"):
        env.pop(name)
    server = start_server(workdir, env)
    try:
        assert statuses(server, 5) == [200] * 5
    finally:
        server.stop()


@pytest.fixture(scope="module")
def limited_server(workdir: Path, manifest: Path) -> Iterator[RunningServer]:
    env = base_env(workdir, manifest, {**LIMITS, "MAHAVISHNU_AUTH_SECRET": SECRET})
    server = start_server(workdir, env)
    yield server
    server.stop()


def test_over_the_limit_gets_429_with_headers(limited_server: RunningServer) -> None:
    token = hs256(claims(sub="limited-1"))
    away_from_window_edge()
    results = [rpc(limited_server.url, "ping", token=token, request_id=n) for n in range(8)]
    assert [r.status_code for r in results[:6]] == [200] * 6
    refused = results[6]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-limit"] == "6"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert int(refused.headers["ratelimit-reset"]) >= 1
    body = refused.json()
    assert body["id"] == 6
    assert body["error"]["code"] == -32029
    metrics = httpx.get(f"{limited_server.base}/metrics").text
    assert float(re.search(r"^mahavishnu_rate_limited_total (\S+)$", metrics, re.M).group(1)) >= 2  # type: ignore[union-attr]


def test_budgets_are_per_principal(limited_server: RunningServer) -> None:
    first, second = hs256(claims(sub="limited-2")), hs256(claims(sub="limited-3"))
    away_from_window_edge()
    assert statuses(limited_server, 7, token=first)[-1] == 429
    assert statuses(limited_server, 1, token=second) == [200]


def test_unauthenticated_callers_are_limited_by_ip(workdir: Path, manifest: Path) -> None:
    server = start_server(workdir, base_env(workdir, manifest, LIMITS))
    try:
        away_from_window_edge()
        assert statuses(server, 8)[-2:] == [429, 429]
    finally:
        server.stop()


def test_a_flood_of_forged_tokens_meets_429_at_the_default_limits(workdir: Path, manifest: Path) -> None:
    env = base_env(workdir, manifest, {"MAHAVISHNU_AUTH_SECRET": SECRET})
    for name in ("RATE_LIMIT_PER_MINUTE", "RATE_LIMIT_PER_HOUR", "RATE_LIMIT_BURST"):
        env.pop(name)
    server = start_server(workdir, env)
    try:
        forged = hs256(claims(sub="mallory"), secret="not-the-server-secret-but-long-enough-0000")
        away_from_window_edge()  # a minute boundary mid-test frees part of the minute's budget
        # Paced under 20 a second at first, so it is the minute's budget that runs out (a flood
        # faster than the server answers would only ever meet the per-second limit).
        results = []
        for sent in range(120):
            results += statuses(server, 1, token=forged)
            if sent < 70:
                time.sleep(1 / 15)
        # The default budget per address: 20 a second and 60 a minute, whichever runs out first.
        assert results.count(401) <= 60
        assert results.count(429) >= 60
        assert set(results) == {401, 429}
        assert statuses(server, 3) == [429] * 3  # no token at all: the same address budget
    finally:
        server.stop()


def test_failed_auth_spends_the_address_budget_but_known_tokens_keep_theirs(
    workdir: Path, manifest: Path
) -> None:
    server = start_server(workdir, base_env(workdir, manifest, {**LIMITS, "MAHAVISHNU_AUTH_SECRET": SECRET}))
    try:
        good = hs256(claims(sub="known"))
        away_from_window_edge()
        assert statuses(server, 1, token=good) == [200]  # first use: verified, and one address unit spent
        bad = hs256(claims(sub="known"), secret="not-the-server-secret-but-long-enough-0000")
        assert statuses(server, 7, token=bad) == [401] * 5 + [429] * 2
        assert statuses(server, 2) == [429, 429]
        refused = rpc(server.url, "ping", token=bad)
        assert refused.headers["ratelimit-limit"] == "6"
        assert "www-authenticate" not in refused.headers  # refused before the token was looked at
        # A token verified before the flood is known good: its own budget, untouched by the flood.
        assert statuses(server, 5, token=good) == [200] * 5
        assert statuses(server, 1, token=good) == [429]  # ...which is a budget too (6 a minute)
    finally:
        server.stop()


def test_malformed_bodies_without_a_known_token_spend_the_address_budget(
    workdir: Path, manifest: Path
) -> None:
    server = start_server(workdir, base_env(workdir, manifest, {**LIMITS, "MAHAVISHNU_AUTH_SECRET": SECRET}))
    try:
        away_from_window_edge()
        garbage = [
            httpx.post(server.url, content=b"[" * 100_000, headers={"Content-Type": "application/json"})
            for _ in range(8)
        ]
        # Refused before parsing once the budget is spent: a flood costs no parsing at all.
        assert [r.status_code for r in garbage] == [400] * 6 + [429] * 2
    finally:
        server.stop()


def test_forwarded_for_only_from_trusted_proxies(workdir: Path, manifest: Path) -> None:
    trusted = base_env(workdir, manifest, {**LIMITS, "MAHAVISHNU_TRUSTED_PROXIES": '["127.0.0.1/32"]'})
    server = start_server(workdir, trusted)
    try:
        away_from_window_edge()
        # Behind a trusted proxy each forwarded client has its own budget.
        assert statuses(server, 7, headers={"X-Forwarded-For": "203.0.113.1"})[-1] == 429
        assert statuses(server, 1, headers={"X-Forwarded-For": "203.0.113.2"}) == [200]
    finally:
        server.stop()
    untrusted = start_server(workdir, base_env(workdir, manifest, LIMITS))
    try:
        away_from_window_edge()
        # Without trust, a fresh spoofed address per request does not buy a fresh budget.
        spoofed = [
            rpc(untrusted.url, "ping", headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(8)
        ]
        assert [r.status_code for r in spoofed][-2:] == [429, 429]
    finally:
        untrusted.stop()


@pytest.mark.redis
def test_two_replicas_share_one_redis_budget(workdir: Path, manifest: Path, redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = base_env(workdir, manifest, {**LIMITS, "MAHAVISHNU_AUTH_SECRET": SECRET, "REDIS_URL": redis_url})
    one, two = start_server(workdir, env), start_server(workdir, env)
    try:
        token = hs256(claims(sub="shared-budget"))
        away_from_window_edge()
        results = statuses(one, 3, token=token) + statuses(two, 3, token=token)
        assert results == [200] * 6
        assert statuses(one, 1, token=token) == [429]
        assert statuses(two, 1, token=token) == [429]
        health = httpx.get(f"{one.base}/health", headers={"Authorization": f"Bearer {token}"}).json()
        assert health["checks"]["rate_limit"]["data"]["backend"] == "redis"
    finally:
        one.stop()
        two.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real redis-server of our own, so the test can stop it without touching the shared one."""
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("redis-server binary", "127.0.0.1", 1)
    port = free_port()
    process = subprocess.Popen(
        [
            binary or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import redis

    client = redis.Redis(port=port)
    while time.monotonic() < deadline:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()


@pytest.mark.redis
@pytest.mark.parametrize(("fail_open", "expected"), [("true", 200), ("false", 503)])
def test_redis_stopping_mid_test_applies_the_policy(
    workdir: Path,
    manifest: Path,
    private_redis: tuple[str, subprocess.Popen[bytes]],
    fail_open: str,
    expected: int,
) -> None:
    url, redis_process = private_redis
    env = base_env(
        workdir, manifest, {**LIMITS, "REDIS_URL": url, "MAHAVISHNU_RATE_LIMIT_FAIL_OPEN": fail_open}
    )
    server = start_server(workdir, env)
    try:
        assert statuses(server, 2) == [200, 200]
        redis_process.kill()
        redis_process.wait()
        assert statuses(server, 3) == [expected] * 3
        health = httpx.get(f"{server.base}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["checks"]["rate_limit"]["status"] == "degraded"
        metrics = httpx.get(f"{server.base}/metrics").text
        policy = "open" if fail_open == "true" else "closed"
        assert re.search(
            rf'^mahavishnu_rate_limit_backend_errors_total{{policy="{policy}"}} [3-9]', metrics, re.M
        )
        assert "rate_limit_backend_unavailable" in server.log_path.read_text()
    finally:
        server.stop()


def test_forged_host_requests_spend_no_budget(workdir: Path, manifest: Path) -> None:
    server = start_server(workdir, base_env(workdir, manifest, LIMITS))
    try:
        away_from_window_edge()
        forged = statuses(server, 10, headers={"Host": "attacker.example"})
        assert forged == [421] * 10
        assert statuses(server, 6) == [200] * 6
    finally:
        server.stop()

"""The Redis backend against the real Redis on 127.0.0.1: atomic, shared, its failure policy."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimass.db.database import open_engine
from aimass.errors import AimassError
from aimass.gateway.keys import KeyStore
from aimass.gateway.ratelimit import Policy
from aimass.gateway.redislimit import RedisLimiter
from aimass.roles import Role
from aimass.testing.server import serve_in_process
from tests.integration.gateway.gatewaytest import FakeClock, ServeFactory
from tests.integration.gateway.ratelimit_load import hammer

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def prefix() -> Iterator[str]:
    if not _redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not running on 127.0.0.1:6379 (CI needs it)")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    name = f"aimass-test-{uuid.uuid4().hex}:"
    yield name
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        for key in client.scan_iter(f"{name}*"):
            client.delete(key)
        client.connection_pool.disconnect()


def _dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"redis://127.0.0.1:{port}/0"


def test_concurrent_acquires_are_atomic(prefix: str) -> None:
    clock = FakeClock(1_800_000_000.0)  # time stands still: only the burst and quota count

    async def run() -> list[bool]:
        # A generous timeout: this is about atomicity, and on a loaded machine
        # 200 connections at once can take longer than the default to open.
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock, timeout_s=10.0)
        try:
            policy = Policy(rate=1.0, burst=50, quota=40, quota_period="day")
            decisions = await asyncio.gather(*(limiter.acquire("k", policy) for _ in range(200)))
            rate_only = await asyncio.gather(
                *(limiter.acquire("r", Policy(rate=1.0, burst=30)) for _ in range(100))
            )
        finally:
            await limiter.close()
        return [d.allowed for d in decisions] + [d.allowed for d in rate_only]

    allowed = asyncio.run(run())
    assert sum(allowed[:200]) == 40  # the quota binds before the burst
    assert sum(allowed[200:]) == 30


@pytest.mark.slow
def test_two_server_processes_share_one_limit(prefix: str, tmp_path: Path) -> None:
    rate, burst, seconds = 10.0, 5, 3.0
    engine = open_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    secret = (
        KeyStore(engine)
        .create(name="shared", role=Role.INVOKER, created_by="test", rate=rate, burst=burst)
        .secret
    )
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    env |= {
        "AIMASS_HOME": str(tmp_path),
        "AIMASS_GATEWAY__RATE_LIMIT_BACKEND": "redis",
        "AIMASS_GATEWAY__REDIS_URL": REDIS_URL,
        "AIMASS_GATEWAY__REDIS_PREFIX": prefix,
        "AIMASS_GATEWAY__REDIS_TIMEOUT_S": "10",  # a slow Redis here would fail open
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    with serve_in_process(env=env) as first, serve_in_process(env=env) as second:
        admitted, refused, elapsed = hammer([first.url, second.url], secret, 6, seconds)
        assert first.stop()[0] == 0 and second.stop()[0] == 0
    assert refused > admitted
    assert admitted <= burst + rate * elapsed  # one limit, not one per process
    assert admitted >= 0.85 * (burst + rate * seconds)


def test_unreachable_redis_fails_open_and_says_so(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aimass.gateway")
    with serve(rate_limit_backend="redis", redis_url=_dead_url(), redis_failure="open") as served:
        secret = served.key(Role.INVOKER, rate=1.0, burst=1)
        with served.client(secret) as client:
            answers = [client.get("/v2") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "x-ratelimit-limit" not in answers[0].headers
        assert getattr(served.gateway.limiter, "failures", 0) == 3
    assert any("Redis is unreachable" in r.getMessage() for r in caplog.records)


def test_unreachable_redis_fails_closed_when_told(serve: ServeFactory) -> None:
    with serve(rate_limit_backend="redis", redis_url=_dead_url(), redis_failure="closed") as served:
        secret = served.key(Role.INVOKER, rate=1.0, burst=1)
        unlimited = served.key(Role.INVOKER)
        with served.client(secret) as client:
            refused = client.get("/v2")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "rate limiter" in refused.json()["error"]
        with served.client(unlimited) as client:
            assert client.get("/v2").status_code == 200  # no limits to check, no Redis needed


def test_missing_policy_error_is_an_aimass_error() -> None:
    # The closed policy raises the catalog's NOT_READY, which the layer turns into 503.
    limiter = RedisLimiter(_dead_url(), fail_open=False, timeout_s=0.2)
    with pytest.raises(AimassError) as raised:
        asyncio.run(limiter.acquire("k", Policy(rate=1.0, burst=1)))
    assert raised.value.spec.http_status == 503

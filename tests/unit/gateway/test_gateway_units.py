"""The gateway's pure parts: token buckets, quota windows, roles, scopes, keys, deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aimass.app import route_table
from aimass.db.database import open_engine
from aimass.errors import AimassError
from aimass.gateway.audit import AuditLog
from aimass.gateway.gateway import Gateway, key_from_headers
from aimass.gateway.keys import KeyStore, digest, parse_expiry, parse_quota, parse_role
from aimass.gateway.layer import GatewayLayer, required
from aimass.gateway.ratelimit import MemoryLimiter, Policy, quota_window
from aimass.gateway.scope import in_scope
from aimass.http.deadline import Deadlines
from aimass.http.routes import RouteTable
from aimass.registry import Registry
from aimass.roles import Role
from aimass.serving import build_engine
from aimass.settings import GatewaySettings, Settings


@pytest.fixture
def table(tmp_path: Path) -> Iterator[RouteTable]:
    """The route table of a server over an empty registry (nothing started)."""
    settings = Settings(home=tmp_path)
    registry = Registry.from_settings(settings)
    engine = build_engine(registry, settings.serving)
    gateway = Gateway.from_settings(settings, registry.database)
    yield route_table(settings, engine=engine, registry=registry, gateway=gateway)
    registry.close()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_bucket_admits_burst_then_rate() -> None:
    clock = Clock(1_000_000.0)
    limiter = MemoryLimiter(clock)
    policy = Policy(rate=2.0, burst=3)
    assert [limiter.take("k", policy).allowed for _ in range(5)] == [True] * 3 + [False] * 2
    refused = limiter.take("k", policy)
    assert refused.retry_after_s == pytest.approx(0.5)
    assert refused.headers()["retry-after"] == "1"
    assert refused.headers()["x-ratelimit-reason"] == "rate"
    clock.now += 0.5
    assert limiter.take("k", policy).allowed
    assert not limiter.take("k", policy).allowed
    clock.now += 100  # a long idle refills only up to the burst
    assert sum(limiter.take("k", policy).allowed for _ in range(10)) == 3


def test_admissions_over_time_never_exceed_burst_plus_rate_times_t() -> None:
    clock = Clock(0.0)
    limiter = MemoryLimiter(clock)
    policy = Policy(rate=7.0, burst=4)
    admitted = 0
    for step in range(10_000):  # a caller every millisecond, from 0 to 9.999 s
        clock.now = step / 1000
        admitted += limiter.take("k", policy).allowed
    assert admitted == 4 + int(7 * 9.999)  # the burst, then every token as it accrues


def test_quota_windows_are_calendar_days_and_months() -> None:
    at = datetime(2026, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    assert quota_window("day", at) == ("2026-12-31", at + 3600)
    name, end = quota_window("month", at)
    assert name == "2026-12" and end == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_quota_binds_and_rolls_over() -> None:
    clock = Clock(datetime(2026, 5, 1, 23, 59, 59, tzinfo=UTC).timestamp())
    limiter = MemoryLimiter(clock)
    policy = Policy(quota=2, quota_period="day")
    assert [limiter.take("k", policy).allowed for _ in range(3)] == [True, True, False]
    refused = limiter.take("k", policy)
    assert refused.headers() == {
        "x-ratelimit-limit": "2",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "1",
        "retry-after": "1",
        "x-ratelimit-reason": "quota",
    }
    clock.now += 1
    assert limiter.take("k", policy).allowed


class _TwoSlots(MemoryLimiter):
    """A table of two slots, so a third bucket must take one of them."""

    _SLOTS = 2
    _PROBES = 2


def test_a_full_table_gives_up_the_bucket_idle_longest_not_the_oldest() -> None:
    clock = Clock(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
    limiter = _TwoSlots(clock)
    policy = Policy(quota=1, quota_period="day")
    assert limiter.take("busy", policy).allowed  # made first...
    clock.now += 5
    assert limiter.take("idle", policy).allowed
    clock.now += 5
    assert not limiter.take("busy", policy).allowed  # ...but used last
    clock.now += 1
    assert limiter.take("new", policy).allowed  # takes the slot "idle" held
    assert not limiter.take("busy", policy).allowed  # its day's quota is still spent
    assert limiter.take("idle", policy).allowed  # given up: it starts full


@pytest.mark.parametrize(
    ("method", "path", "role", "model"),
    [
        ("GET", "/v2/health/ready", None, None),
        ("GET", "/openapi.json", None, None),
        ("GET", "/docs", None, None),
        ("GET", "/docs/swagger-ui-bundle.js", None, None),
        ("POST", "/v2/models/iris@production/infer", Role.INVOKER, "iris@production"),
        ("GET", "/v1/models/iris", Role.INVOKER, "iris"),
        ("POST", "/v2/repository/models/iris/load", Role.DEPLOYER, "iris"),
        ("GET", "/admin/keys", Role.ADMIN, None),
        ("POST", "/something/new", Role.ADMIN, None),
    ],
)
def test_each_request_needs_its_routes_role_and_names_its_model(
    table: RouteTable, method: str, path: str, role: Role | None, model: str | None
) -> None:
    needed, route, params = required(table, method, path)
    named = None if route is None or route.model is None else params[route.model]
    assert (needed, named) == (role, model)


def test_a_wrong_method_needs_the_strictest_role_of_its_path(table: RouteTable) -> None:
    assert required(table, "PUT", "/v2/health/live")[0] is None
    assert required(table, "PATCH", "/admin/keys/key_1")[0] is Role.ADMIN
    assert required(table, "PUT", "/v2/models/iris")[0] is Role.INVOKER


def test_roles_are_ranked() -> None:
    assert Role.ADMIN.allows(Role.DEPLOYER) and Role.DEPLOYER.allows(Role.INVOKER)
    assert not Role.INVOKER.allows(Role.DEPLOYER) and not Role.DEPLOYER.allows(Role.ADMIN)


def test_scopes_match_names_and_globs_of_the_base_name() -> None:
    assert in_scope([], "anything")
    assert in_scope(["iris"], "iris:2") and in_scope(["iris"], "iris@production")
    assert in_scope(["team-a/*", "iri?"], "iris")
    assert not in_scope(["iris"], "iris-onnx")


def test_key_from_headers_prefers_bearer() -> None:
    both = [(b"x-api-key", b"second"), (b"authorization", b"Bearer first")]
    assert key_from_headers(both) == "first"
    assert key_from_headers([(b"x-api-key", b" k ")]) == "k"
    assert key_from_headers([(b"authorization", b"Basic abc")]) is None


def test_parsers_name_what_was_wrong() -> None:
    assert parse_quota("1000/day") == (1000, "day")
    assert parse_quota("5/month") == (5, "month")
    assert parse_role("Admin") is Role.ADMIN
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("2027-01-01", now) == datetime(2027, 1, 1, tzinfo=UTC)
    for bad, call in [
        ("0/day", parse_quota),
        ("5/year", parse_quota),
        ("root", parse_role),
        ("soon", lambda v: parse_expiry(v, now)),
        ("2020-01-01", lambda v: parse_expiry(v, now)),
    ]:
        with pytest.raises(AimassError):
            call(bad)


def test_digest_is_sha256_hex() -> None:
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_deadlines_cancel_late_tasks_on_each_new_event_loop() -> None:
    deadlines = Deadlines(0.05)

    async def late() -> bool:
        task = deadlines.start()
        try:
            await asyncio.sleep(2)
        except asyncio.CancelledError:
            return deadlines.finish(task)  # True: its deadline cancelled it
        return deadlines.finish(task)

    # A loop that ends with the sweep timer pending must not leave the next
    # loop without one (as a server's restart or a second test would).
    assert asyncio.run(late()) is True
    assert asyncio.run(late()) is True


def test_a_request_that_fails_leaves_the_deadline_clock(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'r.db'}")
    gateway = Gateway(
        GatewaySettings(), keys=KeyStore(engine), audit=AuditLog(engine), limiter=MemoryLimiter()
    )

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the app failed")  # as Starlette re-raises after its 500

    layer = GatewayLayer(failing, gateway, RouteTable([], {}), max_body_bytes=1024)
    scope = {"type": "http", "method": "GET", "path": "/v2", "headers": []}

    async def request() -> None:
        with pytest.raises(RuntimeError, match="the app failed"):
            await layer(scope, _never, _never)

    asyncio.run(request())
    assert layer.deadlines.watching == 0


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")

"""Rate limits and quotas over real HTTP, in-process: exact under concurrency, roll over on time."""

from __future__ import annotations

from datetime import UTC, datetime

from aimass.roles import Role
from tests.integration.gateway.gatewaytest import IRIS_ROW, FakeClock, ServeFactory
from tests.integration.gateway.ratelimit_load import hammer


def test_rate_limit_is_exact_under_concurrency(serve: ServeFactory) -> None:
    rate, burst, seconds = 20.0, 5, 2.0
    with serve(key_refresh_s=60) as served:
        secret = served.key(Role.INVOKER, rate=rate, burst=burst)
        admitted, refused, elapsed = hammer([served.url], secret, clients=8, seconds=seconds)
    assert refused > admitted  # the clients really pushed past the limit
    assert admitted <= burst + rate * elapsed  # never more
    assert admitted >= 0.9 * (burst + rate * seconds)  # and not much less


def test_refusals_carry_retry_after_and_ratelimit_headers(serve: ServeFactory) -> None:
    with serve() as served:
        secret = served.key(Role.INVOKER, rate=0.5, burst=2)
        with served.client(secret) as client:
            first = client.get("/v2")
            assert first.headers["x-ratelimit-limit"] == "2"
            assert first.headers["x-ratelimit-remaining"] == "1"
            assert client.get("/v2").headers["x-ratelimit-remaining"] == "0"
            refused = client.post("/v2/models/iris/infer", json=IRIS_ROW)
            assert refused.status_code == 429
            assert refused.json() == {"error": "rate limit exceeded for this API key: slow down"}
            assert refused.headers["x-ratelimit-reason"] == "rate"
            assert refused.headers["retry-after"] == "2"  # one token at 0.5/s
            assert refused.headers["x-ratelimit-remaining"] == "0"
            assert int(refused.headers["x-ratelimit-reset"]) >= 2
            openai = client.get("/v1/models")
            assert openai.status_code == 429
            assert openai.json()["error"]["type"] == "rate_limit_error"


def test_daily_quota_rolls_over_at_midnight_utc(serve: ServeFactory) -> None:
    day = datetime(2026, 11, 22, 23, 59, 0, tzinfo=UTC).timestamp()
    clock = FakeClock(day)
    with serve(clock=clock) as served:
        secret = served.key(Role.INVOKER, quota=(3, "day"))
        with served.client(secret) as client:
            assert [client.get("/v2").status_code for _ in range(3)] == [200, 200, 200]
            refused = client.get("/v2")
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "60"
            assert refused.headers["x-ratelimit-limit"] == "3"
            assert refused.headers["x-ratelimit-reason"] == "quota"
            assert refused.json() == {
                "error": "quota exceeded for this API key: no more requests until it renews"
            }
            clock.now += 61
            assert client.get("/v2").status_code == 200
            assert client.get("/v2").headers["x-ratelimit-remaining"] == "1"


def test_a_quota_that_runs_out_before_the_rate_is_named(serve: ServeFactory) -> None:
    with serve() as served:
        secret = served.key(Role.INVOKER, rate=100.0, burst=100, quota=(1, "day"))
        with served.client(secret) as client:
            assert client.get("/v2").status_code == 200
            refused = client.get("/v1/models")
            assert refused.status_code == 429
            assert refused.headers["x-ratelimit-reason"] == "quota"
            assert refused.json()["error"]["message"].startswith("quota exceeded")


def test_monthly_quota_and_per_model_buckets(serve: ServeFactory) -> None:
    clock = FakeClock(datetime(2026, 12, 31, 12, tzinfo=UTC).timestamp())
    with serve(clock=clock) as served:
        secret = served.key(Role.INVOKER, quota=(1, "month"), per_model=True)
        with served.client(secret) as client:
            assert client.get("/v2/models/iris").status_code == 200
            assert client.get("/v2/models/iris@production").status_code == 429
            assert client.get("/v2/models/other").status_code == 200  # its own bucket
            clock.now += 86400  # 2027-01-01: a new month
            assert client.get("/v2/models/iris").status_code == 200

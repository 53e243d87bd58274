"""The Redis rate-limit backend: one limit shared by every server that uses the same Redis.

One Lua script reads, refills, checks and takes from the token bucket and the
quota counter, so the check-and-take is atomic across processes and machines.
The bucket runs on Redis's clock (``TIME``), so servers with drifting clocks
still share one timeline; quota windows are named by the caller's clock.
When Redis cannot be reached the limiter follows ``redis_failure``: ``open``
admits, ``closed`` refuses with 503; either way it logs the change of state
and counts the calls that failed (:attr:`RedisLimiter.failures`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from aimass.errors import AimassError, ErrorCode
from aimass.gateway.ratelimit import Clock, Decision, Limiter, Policy, decide, quota_window

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisLimiter"]

logger = logging.getLogger("aimass.gateway")

_POOL_SIZE = 32

# KEYS[1]: the bucket hash; KEYS[2]: this window's quota counter.
# ARGV: rate (0: none), burst, now ('' : Redis TIME), quota (0: none), counter ttl.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local quota = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local tokens = burst
local last = now
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
  if state[1] then
    tokens = tonumber(state[1])
    last = tonumber(state[2])
    if now > last then
      tokens = math.min(burst, tokens + (now - last) * rate)
      last = now
    end
  end
end
local used = 0
if quota > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or '0')
end
local allowed = 1
if (rate > 0 and tokens < 1) or (quota > 0 and used >= quota) then
  allowed = 0
end
if allowed == 1 then
  if quota > 0 then
    used = redis.call('INCR', KEYS[2])
    redis.call('EXPIRE', KEYS[2], ARGV[5])
  end
  tokens = tokens - 1
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
             'last', string.format('%.17g', last))
  redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
end
return {allowed, string.format('%.17g', tokens), used}
"""


class RedisLimiter(Limiter):
    """Token buckets and quota counters in Redis, checked by one atomic script."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "aimass:",
        timeout_s: float = 0.5,
        fail_open: bool = True,
        clock: Clock | None = None,
    ) -> None:
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
        except ModuleNotFoundError as exc:
            raise AimassError(
                ErrorCode.MISSING_EXTRA,
                "the redis rate-limit backend needs redis: pip install 'aimass[redis]'",
            ) from exc
        # A bounded pool that waits for a free connection: a burst of requests
        # must queue for Redis, not open a connection each and exhaust the server.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=_POOL_SIZE,
            timeout=max(1.0, 10 * timeout_s),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self._redis: Redis = Redis(connection_pool=pool)
        self._script = self._redis.register_script(_SCRIPT)
        self._prefix = prefix + "rl:"
        self._fail_open = fail_open
        self._clock = clock
        self._down = False
        self.failures = 0
        """Calls that could not reach Redis (and were admitted or refused per the policy)."""

    @override
    async def acquire(self, bucket: str, policy: Policy) -> Decision:
        from redis.exceptions import RedisError

        now = self._clock() if self._clock is not None else time.time()
        window, end = quota_window(policy.quota_period or "day", now)
        # The {bucket} hash tag puts both keys in one Redis Cluster slot, as a script needs.
        keys = [f"{self._prefix}b:{{{bucket}}}", f"{self._prefix}q:{{{bucket}}}:{window}"]
        args: list[Any] = [
            policy.rate or 0,
            policy.burst or 0,
            "" if self._clock is None else repr(now),
            policy.quota or 0,
            max(1, int(end - now) + 3600),
        ]
        try:
            allowed, tokens, used = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc)
        if self._down:
            self._down = False
            logger.warning("Redis is reachable again: rate limits are enforced")
        return decide(
            policy,
            allowed=bool(allowed),
            tokens=float(tokens),
            used=int(used),
            quota_reset_s=end - now,
        )

    def _unavailable(self, exc: BaseException) -> Decision:
        self.failures += 1
        if not self._down:
            self._down = True
            policy = "admitting requests unlimited" if self._fail_open else "refusing requests"
            logger.error("Redis is unreachable (%s): %s until it is back", exc, policy)
        if self._fail_open:
            return Decision(True, 0, 0, 0.0, enforced=False)
        raise AimassError(
            ErrorCode.NOT_READY, "the rate limiter is unavailable; retry shortly", retry_after=1
        )

    @override
    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

"""Rate limits and quotas: one interface, an in-process and a Redis backend.

A bucket (a key, or a key and a model) has a :class:`Policy`: a token bucket
(``rate`` requests per second, holding at most ``burst``) and a quota
(``quota`` requests per calendar day or month, UTC). One :meth:`Limiter.acquire`
checks both and takes from both atomically, so N concurrent callers against
R/s over T seconds are admitted at most ``burst + R*T`` times. Quota windows
are calendar periods: a day's quota is whole again at 00:00 UTC.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from typing_extensions import override

__all__ = ["Decision", "Limiter", "MemoryLimiter", "Policy", "decide", "quota_window"]

Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``); injectable so tests can move time."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits of one bucket; ``None`` turns a limit off."""

    rate: float | None = None
    burst: int | None = None
    quota: int | None = None
    quota_period: str | None = None

    @property
    def limited(self) -> bool:
        """Whether there is anything to enforce."""
        return self.rate is not None or self.quota is not None


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether one request was admitted, and what the ``X-RateLimit-*`` headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float = 0.0
    enforced: bool = True
    """False when the limit could not be checked (Redis down, failing open): no headers."""

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit/-Remaining/-Reset`` (seconds), plus ``Retry-After`` if refused."""
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(math.ceil(self.reset_s)),
        }
        if not self.allowed:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


def quota_window(period: str, now: float) -> tuple[str, float]:
    """The calendar window containing ``now``: its name and when it ends (epoch seconds)."""
    at = datetime.fromtimestamp(now, UTC)
    if period == "month":
        year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
        return f"{at.year:04d}-{at.month:02d}", datetime(year, month, 1, tzinfo=UTC).timestamp()
    start = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return at.date().isoformat(), (start + timedelta(days=1)).timestamp()


def decide(
    policy: Policy, *, allowed: bool, tokens: float, used: int, quota_reset_s: float
) -> Decision:
    """The decision for a bucket left with ``tokens`` and ``used`` after an acquire.

    The headers describe whichever limit binds: the one that refused, or the
    one with fewer requests left.
    """
    rate_view: Decision | None = None
    quota_view: Decision | None = None
    if policy.rate is not None and policy.burst is not None:
        rate_view = Decision(
            allowed,
            policy.burst,
            max(0, math.floor(tokens)),
            (policy.burst - tokens) / policy.rate,
            max(0.0, (1 - tokens) / policy.rate),
        )
    if policy.quota is not None:
        quota_view = Decision(
            allowed, policy.quota, max(0, policy.quota - used), quota_reset_s, quota_reset_s
        )
    if quota_view is None:
        assert rate_view is not None
        return rate_view
    if rate_view is None:
        return quota_view
    if not allowed:
        return quota_view if used >= quota_view.limit else rate_view
    return quota_view if quota_view.remaining < rate_view.remaining else rate_view


class Limiter(ABC):
    """Admits or refuses one request from a bucket under a policy."""

    @abstractmethod
    async def acquire(self, bucket: str, policy: Policy) -> Decision:
        """Take one request from ``bucket`` if both its rate and its quota allow."""

    async def close(self) -> None:  # noqa: B027  (a backend with nothing to release)
        """Release connections."""


class MemoryLimiter(Limiter):
    """Limits held in this process: exact, and shared by nothing else."""

    # Past this many buckets, full (idle) ones are forgotten: per-model buckets
    # are named by clients, so the table must not grow without bound.
    _MAX_BUCKETS = 10_000

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._used: dict[str, tuple[str, int]] = {}

    @override
    async def acquire(self, bucket: str, policy: Policy) -> Decision:
        return self.take(bucket, policy)

    def take(self, bucket: str, policy: Policy) -> Decision:
        """The synchronous core of :meth:`acquire` (it never waits)."""
        with self._lock:
            now = self._clock()
            tokens = 0.0
            if policy.rate is not None and policy.burst is not None:
                tokens, last = self._buckets.get(bucket, (float(policy.burst), now))
                if now > last:
                    tokens = min(float(policy.burst), tokens + (now - last) * policy.rate)
                last = max(now, last)
            used, quota_reset = 0, 0.0
            window = ""
            if policy.quota is not None:
                window, end = quota_window(policy.quota_period or "day", now)
                seen_window, seen = self._used.get(bucket, (window, 0))
                used = seen if seen_window == window else 0
                quota_reset = end - now
            allowed = (policy.rate is None or tokens >= 1) and (
                policy.quota is None or used < policy.quota
            )
            if allowed:
                tokens -= 1
                used += 1
            if policy.rate is not None:
                self._buckets[bucket] = (tokens, last)
                if len(self._buckets) > self._MAX_BUCKETS:
                    self._forget_full(now, policy)
            if policy.quota is not None:
                self._used[bucket] = (window, used)
                if len(self._used) > self._MAX_BUCKETS:
                    self._used = {b: u for b, u in self._used.items() if u[0] == window}
            return decide(
                policy, allowed=allowed, tokens=tokens, used=used, quota_reset_s=quota_reset
            )

    def _forget_full(self, now: float, policy: Policy) -> None:
        assert policy.rate is not None and policy.burst is not None
        full_after = policy.burst / policy.rate
        for name, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[name]

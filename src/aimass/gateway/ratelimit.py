"""Rate limits and quotas: one interface, an in-process and a Redis backend.

A bucket (a key, or a key and a model) has a :class:`Policy`: a token bucket
(``rate`` requests per second, holding at most ``burst``) and a quota
(``quota`` requests per calendar day or month, UTC). One :meth:`Limiter.acquire`
checks both and takes from both atomically, so N concurrent callers against
R/s over T seconds are admitted at most ``burst + R*T`` times. Quota windows
are calendar periods: a day's quota is whole again at 00:00 UTC. The memory
backend is shared by the worker processes of one server; the Redis one by
every server that uses the same Redis.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import multiprocessing
import struct
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
    reason: str = "rate"
    """Which limit these figures are of: ``rate`` (the token bucket) or ``quota``."""

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit/-Remaining/-Reset`` (seconds); if refused, ``Retry-After`` too.

        A refusal also says which limit ran out: ``X-RateLimit-Reason`` is
        ``rate`` or ``quota``.
        """
        headers = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(math.ceil(self.reset_s)),
        }
        if not self.allowed:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after_s)))
            headers["x-ratelimit-reason"] = self.reason
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
            allowed,
            policy.quota,
            max(0, policy.quota - used),
            quota_reset_s,
            quota_reset_s,
            reason="quota",
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
    """Limits held in this machine's memory, shared by the processes a server forks.

    The buckets live in a fixed table in an anonymous shared mapping, made with
    the limiter: a supervisor makes it before it forks its workers, so they all
    take from the same counts and a key gets its limit in total, not once per
    worker. A bucket is found by a hash of its name among a few slots; when
    those are all taken, the one idle longest is given up (it is full again
    the next time it is used), so clients naming buckets (per-model limits)
    cannot grow the table. Written by hand because the standard library has
    shared memory and a process-shared lock but no shared table, and nothing
    in this workplace's registries offers one for forked processes.
    """

    _SLOTS = 16_384
    _PROBES = 8
    # A bucket's name digest, its tokens and when they were counted, its quota
    # window (identified by when the window ends) and the requests used in it.
    _SLOT = struct.Struct("<16sddqq")
    _EMPTY = bytes(16)

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._table = mmap.mmap(-1, self._SLOTS * self._SLOT.size)
        # A semaphore that forked processes share (a threading lock would not be).
        self._lock = multiprocessing.get_context("fork").Lock()

    @override
    async def acquire(self, bucket: str, policy: Policy) -> Decision:
        return self.take(bucket, policy)

    def take(self, bucket: str, policy: Policy) -> Decision:
        """The synchronous core of :meth:`acquire` (it never waits but for the lock)."""
        name = hashlib.blake2b(bucket.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            now = self._clock()
            offset, found = self._slot(name)
            tokens, last, window, used = (
                self._SLOT.unpack_from(self._table, offset)[1:]
                if found
                else (float(policy.burst or 0), now, 0, 0)
            )
            if policy.rate is not None and policy.burst is not None and now > last:
                tokens = min(float(policy.burst), tokens + (now - last) * policy.rate)
            # Every bucket records its last use, quota-only ones too: it is
            # what decides which bucket gives up its slot (see _slot).
            last = max(now, last)
            quota_reset = 0.0
            if policy.quota is not None:
                end = quota_window(policy.quota_period or "day", now)[1]
                if window != int(end):
                    window, used = int(end), 0
                quota_reset = end - now
            allowed = (policy.rate is None or tokens >= 1) and (
                policy.quota is None or used < policy.quota
            )
            if allowed:
                tokens -= 1
                used += 1
            self._SLOT.pack_into(self._table, offset, name, tokens, last, window, used)
            return decide(
                policy, allowed=allowed, tokens=tokens, used=used, quota_reset_s=quota_reset
            )

    def _slot(self, name: bytes) -> tuple[int, bool]:
        """The offset of ``name``'s slot, and whether it holds ``name`` already.

        Among the probed slots: its own, else the first empty one, else the
        one whose bucket was counted longest ago.
        """
        size, table = self._SLOT.size, self._table
        start = int.from_bytes(name[:8], "little")
        spare, spare_last = -1, math.inf
        for probe in range(self._PROBES):
            offset = (start + probe) % self._SLOTS * size
            held = table[offset : offset + 16]
            if held == name:
                return offset, True
            if held == self._EMPTY:
                if spare_last > -math.inf:
                    spare, spare_last = offset, -math.inf
                continue
            last = self._SLOT.unpack_from(table, offset)[2]
            if last < spare_last:
                spare, spare_last = offset, last
        return spare, False

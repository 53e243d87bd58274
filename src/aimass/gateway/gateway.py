"""The gateway: who is calling, may they, and may they now.

:class:`Gateway` holds the key table (a copy, re-read every
``key_refresh_s``, as soon as :mod:`aimass.gateway.keywatch` says it changed,
and, at most every ``key_recheck_s``, when a key is not in it), the rate
limiter, the audit log and the request limits;
:mod:`aimass.gateway.layer` asks it about each request. With
``enabled="auto"`` keys are required as soon as one exists, so a local demo
with no keys stays open and a deployment closes by creating its first key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from aimass.contract.reference import ModelRef
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.audit import AuditLog
from aimass.gateway.keys import ApiKey, KeyStore, digest
from aimass.gateway.keywatch import KeyWatcher
from aimass.gateway.ratelimit import Clock, Decision, Limiter, MemoryLimiter, Policy
from aimass.roles import Role

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from aimass.settings import GatewaySettings, Settings

__all__ = ["Gateway", "configured_limiter", "key_from_headers"]

logger = logging.getLogger("aimass.gateway")

_BEARER = b"bearer "


def configured_limiter(settings: GatewaySettings, clock: Clock = time.time) -> Limiter:
    """The rate limiter the settings name: this machine's, or Redis's."""
    if settings.rate_limit_backend == "redis":
        from aimass.gateway.redislimit import RedisLimiter

        return RedisLimiter(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            timeout_s=settings.redis_timeout_s,
            fail_open=settings.redis_failure == "open",
        )
    return MemoryLimiter(clock)


def key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key in ``Authorization: Bearer …`` or, failing that, ``x-api-key``."""
    fallback = None
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == _BEARER:
            return value[7:].strip().decode("latin-1")
        if name == b"x-api-key":
            fallback = value.strip().decode("latin-1")
    return fallback


class Gateway:
    """Authentication, authorization, rate limits and audit for one server."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        keys: KeyStore,
        audit: AuditLog,
        limiter: Limiter,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.audit = audit
        self.limiter = limiter
        self._clock = clock
        self._table: dict[str, ApiKey] = {}
        self._any = False
        self._loaded_at = -math.inf  # when the read of the copy in hand started
        self._changes = 0  # changes announced by the watcher (its thread adds to it)
        self._refresh = asyncio.Lock()
        self._watcher = KeyWatcher(keys, self.invalidate, interval=settings.key_watch_s)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        *,
        limiter: Limiter | None = None,
        clock: Clock = time.time,
    ) -> Gateway:
        """A gateway over the product database ``engine``, with the configured limiter.

        ``limiter`` replaces the configured one (a supervisor gives its workers
        one whose counts they share).
        """
        return cls(
            settings.gateway,
            keys=KeyStore(engine),
            audit=AuditLog(engine),
            limiter=limiter or configured_limiter(settings.gateway, clock),
            clock=clock,
        )

    @property
    def off(self) -> bool:
        """Key checks are switched off altogether (``enabled="off"``)."""
        return self.settings.enabled == "off"

    def admits_all(self) -> bool:
        """No request needs a key, known without reading the key table again.

        Key checks are off, or no key was ever made and the copy of the table
        that says so is fresh: what :meth:`cached_table` and :meth:`enforcing`
        say together, in one call, since every request asks it first.
        """
        mode = self.settings.enabled
        return mode == "off" or (
            mode == "auto"
            and not self._any
            and time.monotonic() - self._loaded_at < self.settings.key_refresh_s
        )

    def cached_table(self) -> dict[str, ApiKey] | None:
        """The usable keys by digest while the copy is fresh; None once it is stale."""
        if time.monotonic() - self._loaded_at < self.settings.key_refresh_s:
            return self._table
        return None

    def start(self) -> None:
        """Start watching the key table for changes other processes make."""
        if not self.off:
            self._watcher.start()

    async def table(self) -> dict[str, ApiKey]:
        """The usable keys by digest, re-read from the database when the copy is stale."""
        table = self.cached_table()
        if table is not None:
            return table
        async with self._refresh:
            if time.monotonic() - self._loaded_at >= self.settings.key_refresh_s:
                await self._reload()
        return self._table

    async def recheck(self, since: float) -> dict[str, ApiKey]:
        """The usable keys as read at ``since`` or later: a key not in the copy may be new.

        Reads are at least ``key_recheck_s`` apart however many requests ask,
        so a request waits at most that long for the read that answers it,
        and a flood of unknown keys costs one read per interval.
        """
        async with self._refresh:
            if self._loaded_at < since:
                wait = self._loaded_at + self.settings.key_recheck_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._reload()
        return self._table

    async def _reload(self) -> None:
        """Read the key table (off the event loop); the caller holds ``_refresh``."""
        started, changes = time.monotonic(), self._changes
        try:
            self._table, self._any = await run_in_threadpool(self.keys.snapshot)
        except Exception:
            # Keep serving with the last table we had; say so.
            logger.exception("could not re-read the API key table")
        if self._changes == changes:
            self._loaded_at = started
        # else a change was announced during the read, which may predate it: read again next time

    def invalidate(self) -> None:
        """Re-read the key table on the next request (after a key changes, here or elsewhere)."""
        self._changes += 1
        self._loaded_at = -math.inf

    def enforcing(self) -> bool:
        """Whether requests need a key: always when on; when auto, once a key was ever made.

        Revoking or outliving every key does not reopen a server: that takes
        ``enabled="off"``, said out loud.
        """
        mode = self.settings.enabled
        return mode == "on" or (mode == "auto" and self._any)

    def now(self) -> datetime:
        """The gateway's clock as a UTC datetime."""
        return datetime.fromtimestamp(self._clock(), UTC)

    async def authenticate(self, table: dict[str, ApiKey], presented: str | None) -> ApiKey:
        """The key a request presents; UNAUTHENTICATED if missing, unknown, revoked or expired.

        A key not in ``table`` is looked for again in a fresh read (it may
        have been made since ``table`` was). Unknown, revoked and expired keys
        get the same message: only the holder of a key learns anything from
        its state, and from the log.
        """
        if not presented:
            raise AimassError(
                ErrorCode.UNAUTHENTICATED,
                "an API key is required: send 'Authorization: Bearer <key>' or 'x-api-key'",
            )
        presented_digest = digest(presented)
        key = table.get(presented_digest)
        if key is None:
            key = (await self.recheck(time.monotonic())).get(presented_digest)
        if key is None or not key.matches(presented_digest):
            raise AimassError(ErrorCode.UNAUTHENTICATED, "invalid API key")
        if not key.usable(self.now()):
            logger.info("refused expired API key %s", key.id)
            raise AimassError(ErrorCode.UNAUTHENTICATED, "invalid API key")
        return key

    @staticmethod
    def authorize(key: ApiKey, role: Role) -> None:
        """PERMISSION_DENIED unless ``key``'s role covers ``role``."""
        if not key.role.allows(role):
            raise AimassError(
                ErrorCode.PERMISSION_DENIED,
                f"this API key's role ({key.role.value}) may not do this; it needs {role.value}",
            )

    async def admit(self, key: ApiKey, model: str | None) -> Decision | None:
        """Take one request from the key's rate limit and quota; ``None`` if it has neither."""
        if key.rate is None and key.quota is None:
            return None
        bucket = key.id
        if key.per_model and model:
            bucket = f"{key.id}:{ModelRef.parse(model).name}"
        policy = Policy(key.rate, key.burst, key.quota, key.quota_period)
        return await self.limiter.acquire(bucket, policy)

    async def record(self, **event: Any) -> None:
        """Append an audit event without letting a database hiccup fail the request."""
        try:
            await run_in_threadpool(lambda: self.audit.record(**event))
        except Exception:
            logger.exception("could not write the audit event %s", event)

    async def close(self) -> None:
        """Stop watching the key table and release the limiter's connections."""
        await run_in_threadpool(self._watcher.stop)
        await self.limiter.close()

"""Turning a model reference into a registry version, without a database query per request.

``iris`` means the latest ready version and ``iris@production`` whatever the
alias points at; both can change while the server runs, so answers are
trusted for ``ttl`` seconds and then asked again. The registry is synchronous
(SQL, maybe over the network), so lookups run on the load executor, and
concurrent lookups of one reference share a single query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry, parse_ref
from aimass.serving.executor import Executor

__all__ = ["Resolver", "split_ref"]

_Key = tuple[str, int | None, str | None]


def split_ref(model: str, version: int | None = None) -> _Key:
    """``(name, version, alias)`` from a reference and an optional explicit version.

    INVALID_INPUT when the two disagree or an alias is given with a version.
    """
    name, ref_version, alias = parse_ref(model)
    if version is None:
        return name, ref_version, alias
    if alias is not None:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"'{model}' names an alias; do not also give version {version}"
        )
    if ref_version is not None and ref_version != version:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"'{model}' and version {version} name different versions"
        )
    return name, version, None


class Resolver:
    """Cached ``(name, version, alias) -> VersionInfo`` lookups in a registry."""

    def __init__(
        self,
        registry: Registry,
        executor: Executor,
        *,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._ttl = ttl
        self._clock = clock
        self._known: dict[_Key, tuple[VersionInfo, float]] = {}
        self._pending: dict[_Key, asyncio.Future[VersionInfo]] = {}

    async def resolve(
        self, name: str, version: int | None, alias: str | None, *, fresh: bool = False
    ) -> VersionInfo:
        """The version meant; NOT_FOUND if the registry has no such model, version or alias."""
        key = (name, version, alias)
        known = self._known.get(key)
        if known is not None and not fresh and self._clock() < known[1]:
            return known[0]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: one caller timing out must not cancel the query others wait on.
        return await asyncio.shield(pending)

    def cached(self, name: str, version: int | None, alias: str | None) -> VersionInfo | None:
        """The answer already known and still fresh, without waiting; None otherwise."""
        known = self._known.get((name, version, alias))
        if known is not None and self._clock() < known[1]:
            return known[0]
        return None

    def forget(self, name: str) -> None:
        """Drop cached answers about ``name`` so the next request asks the registry."""
        for key in [k for k in self._known if k[0] == name]:
            del self._known[key]

    def _settle(self, key: _Key, done: asyncio.Future[VersionInfo]) -> None:
        self._pending.pop(key, None)
        # Mark the error seen: if every waiter gave up, nobody else will.
        if not done.cancelled():
            done.exception()

    async def _lookup(self, key: _Key) -> VersionInfo:
        name, version, alias = key
        info = await self._executor.run(self._get, name, version, alias)
        self._known[key] = (info, self._clock() + self._ttl)
        return info

    def _get(self, name: str, version: int | None, alias: str | None) -> VersionInfo:
        return self._registry.get_version(name, version, alias=alias)

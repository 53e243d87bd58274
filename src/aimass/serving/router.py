"""The router: which version answers a model reference, without a database query per request.

:class:`Router` is the seam the engine asks for every request, and for every
metadata and readiness question; :class:`RegistryRouter` is today's answer,
straight from the registry. ``iris`` means the latest ready version and
``iris@production`` whatever the alias points at; both can change while the
server runs, so answers are trusted for ``ttl`` seconds and then asked again.
The registry is synchronous (SQL, maybe over the network), so lookups run on
an executor, and concurrent lookups of one reference share a single query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from aimass.contract.reference import ModelRef
from aimass.contract.request import InferRequest
from aimass.registry.records import ModelInfo, VersionInfo
from aimass.registry.registry import Registry
from aimass.serving.executor import Executor

__all__ = ["RegistryRouter", "Router"]


class Router(Protocol):
    """Model references to versions, and what there is to call.

    ``request`` is the inference request being routed, when there is one: a
    router that splits traffic reads its caller or id to keep a client on one
    version.
    """

    def cached(self, ref: ModelRef, request: InferRequest | None = None) -> VersionInfo | None:
        """The version meant, if it is known now without waiting; None otherwise."""

    async def resolve(
        self, ref: ModelRef, request: InferRequest | None = None, *, fresh: bool = False
    ) -> VersionInfo:
        """The version meant; NOT_FOUND if there is no such model, version or alias."""

    def forget(self, name: str) -> None:
        """Drop what is known about ``name``, so the next request asks again."""

    async def models(self) -> list[ModelInfo]:
        """Every model that can be called."""

    async def model(self, name: str) -> ModelInfo:
        """One model; NOT_FOUND if there is none."""

    async def versions(self, name: str) -> list[VersionInfo]:
        """A model's ready versions, oldest first."""

    def close(self) -> None:
        """Release what the router holds (threads); it must not be used afterwards."""


class RegistryRouter:
    """Cached reference lookups in a registry (see the module docstring)."""

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
        self._known: dict[ModelRef, tuple[VersionInfo, float]] = {}
        self._pending: dict[ModelRef, asyncio.Future[VersionInfo]] = {}

    def cached(self, ref: ModelRef, request: InferRequest | None = None) -> VersionInfo | None:
        """The answer already known and still fresh, without waiting; None otherwise."""
        known = self._known.get(ref)
        if known is not None and self._clock() < known[1]:
            return known[0]
        return None

    async def resolve(
        self, ref: ModelRef, request: InferRequest | None = None, *, fresh: bool = False
    ) -> VersionInfo:
        """The version meant; NOT_FOUND if the registry has no such model, version or alias."""
        known = self._known.get(ref)
        if known is not None and not fresh and self._clock() < known[1]:
            return known[0]
        pending = self._pending.get(ref)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(ref))
            self._pending[ref] = pending
            pending.add_done_callback(lambda done: self._settle(ref, done))
        # Shielded: one caller timing out must not cancel the query others wait on.
        return await asyncio.shield(pending)

    def forget(self, name: str) -> None:
        """Drop cached answers about ``name`` so the next request asks the registry."""
        for ref in [r for r in self._known if r.name == name]:
            del self._known[ref]

    async def models(self) -> list[ModelInfo]:
        """Every registered model."""
        return await self._executor.run(self._registry.list_models)

    async def model(self, name: str) -> ModelInfo:
        """One registered model."""
        return await self._executor.run(self._registry.get_model, name)

    async def versions(self, name: str) -> list[VersionInfo]:
        """A model's ready versions."""
        return await self._executor.run(self._registry.list_versions, name)

    def close(self) -> None:
        """Stop the lookup threads."""
        self._executor.shutdown(wait=False)

    def _settle(self, ref: ModelRef, done: asyncio.Future[VersionInfo]) -> None:
        self._pending.pop(ref, None)
        # Mark the error seen: if every waiter gave up, nobody else will.
        if not done.cancelled():
            done.exception()

    async def _lookup(self, ref: ModelRef) -> VersionInfo:
        info = await self._executor.run(self._registry.resolve, ref)
        self._known[ref] = (info, self._clock() + self._ttl)
        return info

"""The loaded-model cache: load on first use, share loads, evict the least recently used.

Each model version in the cache is a :class:`CachedModel`: the loaded model,
its schedulers (:mod:`aimass.serving.scheduler`), and a count of the requests
using it. Requests :meth:`ModelCache.acquire` a version before submitting and
:meth:`ModelCache.release` it after; concurrent first requests share one load,
which the backend runs off the event loop.

Memory is estimated as the total size of the version's artifact files
(``sum(f.size for f in manifest.files)``), known from the manifest before
anything is loaded. It is a proxy, not a measurement: weights usually take
about their file size in memory, and measuring the process's resident memory
around a load would be wrong as soon as two loads overlap. When a load would
take the total over the budget, idle versions are evicted, least recently used
first; a version with requests in flight is never evicted, and if that leaves
the cache over budget the excess is evicted when those requests finish. A
version larger than the whole budget still loads (alone) rather than never
serving.

A load that fails marks only that version UNAVAILABLE with a public reason;
requests to it fail fast with the same error until ``retry_after`` seconds
have passed or :meth:`ModelCache.load` is called again. :meth:`ModelCache.warm`
starts a load without waiting for it (what a readiness probe needs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from aimass.contract.runtime import Capability
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo
from aimass.runtimes.model import LoadedModel
from aimass.serving.observer import NULL_OBSERVER, Observer, hooks
from aimass.serving.scheduler import Scheduler

__all__ = ["CachedModel", "ModelCache", "ModelState", "ModelStatus"]

_log = logging.getLogger(__name__)

Loader = Callable[[VersionInfo], Awaitable[LoadedModel]]
"""Loads a version off the event loop (:meth:`Backend.load`)."""

SchedulersFor = Callable[[LoadedModel], dict[Capability, Scheduler]]
"""The schedulers that serve a freshly loaded model, by capability."""


class ModelStatus(StrEnum):
    """Where a cached version stands (the names of the Triton repository index)."""

    READY = "READY"
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"


_READY = ModelStatus.READY  # read per request; an enum member lookup is not free


@dataclass(frozen=True)
class ModelState:
    """One row of the cache's index."""

    name: str
    version: int
    status: ModelStatus
    reason: str = ""
    memory_bytes: int = 0
    in_flight: int = 0
    overruns: int = 0
    stalled: bool = False


class CachedModel:
    """One model version in the cache; ``model`` and ``schedulers`` are set once READY."""

    def __init__(self, info: VersionInfo, now: float) -> None:
        self.info = info
        self.key = (info.model, info.version)
        self.size = sum(f.size for f in info.manifest.files)
        self.status = ModelStatus.LOADING
        self.reason = ""
        self.users = 0
        self.last_used = now
        self.model: LoadedModel | None = None
        self.schedulers: dict[Capability, Scheduler] = {}
        self._error: AimassError | None = None
        self._failed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def state(self) -> ModelState:
        """The row of this version in the index."""
        memory = 0 if self.status is ModelStatus.UNAVAILABLE else self.size
        schedulers = self.unique_schedulers()
        return ModelState(
            self.info.model,
            self.info.version,
            self.status,
            self.reason,
            memory,
            self.users,
            sum(s.overruns for s in schedulers),
            self.stalled,
        )

    @property
    def stalled(self) -> bool:
        """Whether one of its schedulers is stalled: its recent calls all overran."""
        return any(s.stalled for s in self.schedulers.values())

    def unique_schedulers(self) -> list[Scheduler]:
        """Each scheduler once (one may serve several capabilities)."""
        return list({id(s): s for s in self.schedulers.values()}.values())


class ModelCache:
    """Loaded model versions by ``(name, version)``, in least-recently-used order."""

    def __init__(
        self,
        loader: Loader,
        schedulers: SchedulersFor,
        release: Callable[[LoadedModel], None],
        *,
        budget_bytes: int | None = None,
        retry_after: float = 30.0,
        observer: Observer = NULL_OBSERVER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._schedulers = schedulers
        self._release = release
        self._hooks = hooks(observer)
        self.budget_bytes = budget_bytes
        self.retry_after = retry_after
        self._clock = clock
        self._entries: OrderedDict[tuple[str, int], CachedModel] = OrderedDict()
        self._used = 0
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def used_bytes(self) -> int:
        """Estimated memory of the versions loaded or loading."""
        return self._used

    def index(self) -> list[ModelState]:
        """Every cached version and its status, by name and version."""
        return [self._entries[key].state() for key in sorted(self._entries)]

    def is_ready(self, name: str, version: int) -> bool:
        """Whether the version is loaded and serving (and not stalled)."""
        entry = self._entries.get((name, version))
        return entry is not None and entry.status is ModelStatus.READY and not entry.stalled

    def acquire_ready(self, info: VersionInfo) -> CachedModel | None:
        """The version if it is READY now (counted as in use, as :meth:`acquire`), else None."""
        entry = self._entries.get((info.model, info.version))
        if entry is None or entry.status is not _READY:
            return None
        entry.users += 1
        entry.last_used = self._clock()
        self._entries.move_to_end(entry.key)
        return entry

    async def acquire(self, info: VersionInfo) -> CachedModel:
        """The READY version, loading it first if needed; pair with :meth:`release`.

        Counts as one request in flight until released, so it is not evicted
        while in use. Raises the load's error if the version cannot load.
        """
        entry = self.acquire_ready(info)
        if entry is not None:
            return entry
        return await self._ensure(info, retry=False, use=True)

    def release(self, entry: CachedModel) -> None:
        """End one use of a version; evicts what no longer fits once nothing uses it."""
        entry.users -= 1
        if entry.users == 0 and self.budget_bytes is not None and self._used > self.budget_bytes:
            self._make_room(0)

    def seed(self, info: VersionInfo, model: LoadedModel) -> None:
        """Hold ``model``, already loaded elsewhere, as the READY version ``info`` names.

        For models loaded before the cache existed (a supervisor loads them
        before forking its workers, which share their memory). The version
        counts against the budget and is evicted like any other. No event
        loop is needed. Raises ``ValueError`` if the version is already cached.
        """
        if (info.model, info.version) in self._entries:
            raise ValueError(f"model {info.ref} is already in the cache")
        entry = CachedModel(info, self._clock())
        entry.model, entry.schedulers = model, self._schedulers(model)
        entry.status = ModelStatus.READY
        self._entries[entry.key] = entry
        self._used += entry.size

    async def load(self, info: VersionInfo) -> None:
        """Load a version now, retrying at once if its last load failed."""
        await self._ensure(info, retry=True, use=False)

    def warm(self, info: VersionInfo) -> bool:
        """Whether the version is READY and not stalled; if neither that nor loading, load it.

        A version whose last load failed is tried again only once
        ``retry_after`` has passed, as a request would. Needs a running loop.
        """
        entry = self._entries.get((info.model, info.version))
        if entry is None or (
            entry.status is ModelStatus.UNAVAILABLE
            and self._clock() - entry._failed_at >= self.retry_after
        ):
            if self._closed:
                return False
            entry = self._start_load(info)
        return entry.status is _READY and not entry.stalled

    async def unload(self, name: str, version: int | None = None) -> int:
        """Drop a version (or every version of ``name``) after its queued requests finish.

        A later request loads it again. Returns how many versions were dropped.
        """
        dropped = [
            entry
            for key, entry in list(self._entries.items())
            if key[0] == name and (version is None or key[1] == version)
        ]
        for entry in dropped:
            self._forget(entry)
        await asyncio.gather(*(self._stop(entry) for entry in dropped))
        return len(dropped)

    async def close(self) -> None:
        """Refuse new loads, drain every batcher, and drop every version."""
        self._closed = True
        entries = list(self._entries.values())
        for entry in entries:
            self._forget(entry)
        await asyncio.gather(*(self._stop(entry) for entry in entries))
        while self._stopping:
            await asyncio.gather(*self._stopping)

    # -- loading --------------------------------------------------------------

    async def _ensure(self, info: VersionInfo, *, retry: bool, use: bool) -> CachedModel:
        key = (info.model, info.version)
        while True:
            if self._closed:
                raise AimassError(ErrorCode.NOT_READY, "the server is shutting down")
            entry = self._entries.get(key)
            if entry is None or (
                entry.status is ModelStatus.UNAVAILABLE
                and (retry or self._clock() - entry._failed_at >= self.retry_after)
            ):
                entry = self._start_load(info)
            # Counting waiters as users keeps a just-loaded version from being
            # evicted before they get to use it.
            entry.users += 1
            try:
                if entry._task is not None:
                    await asyncio.shield(entry._task)
            except BaseException:
                entry.users -= 1
                raise
            if self._entries.get(key) is not entry:
                # Unloaded or evicted while we waited: start over with a fresh load.
                entry.users -= 1
                continue
            if entry.status is ModelStatus.UNAVAILABLE:
                entry.users -= 1
                assert entry._error is not None  # a failed entry always records its error
                raise entry._error.copy()
            entry.last_used = self._clock()
            self._entries.move_to_end(key)
            if not use:
                self.release(entry)
            return entry

    def _start_load(self, info: VersionInfo) -> CachedModel:
        entry = CachedModel(info, self._clock())
        self._entries[entry.key] = entry
        self._entries.move_to_end(entry.key)
        self._used += entry.size
        self._make_room(entry.size)
        entry._task = asyncio.get_running_loop().create_task(
            self._load(entry), name=f"aimass-load-{info.ref}"
        )
        return entry

    async def _load(self, entry: CachedModel) -> None:
        name, version = entry.key
        started = self._clock()
        try:
            model = await self._loader(entry.info)
            schedulers = self._schedulers(model)
        except AimassError as exc:
            _log.warning("model %s:%d failed to load: %s", name, version, exc.message)
            self._fail(entry, exc)
        except Exception:
            _log.exception("model %s:%d failed to load", name, version)
            self._fail(
                entry,
                AimassError(
                    ErrorCode.INTERNAL,
                    f"model {name}:{version} failed to load; the server log has details",
                ),
            )
        else:
            entry.model, entry.schedulers = model, schedulers
            entry.status = ModelStatus.READY
            if self._hooks.loaded is not None:
                self._hooks.loaded(entry.info, self._clock() - started)
        finally:
            entry._task = None

    def _fail(self, entry: CachedModel, error: AimassError) -> None:
        if self._hooks.failed is not None:
            self._hooks.failed(None, error)
        entry.status = ModelStatus.UNAVAILABLE
        entry.reason = error.message
        entry._error = error
        entry._failed_at = self._clock()
        if self._entries.get(entry.key) is entry:
            self._used -= entry.size

    # -- eviction -------------------------------------------------------------

    def _make_room(self, incoming: int) -> None:
        """Evict idle READY versions, least recently used first, until the total fits."""
        budget = self.budget_bytes
        if budget is None or self._used <= budget:
            return
        for entry in list(self._entries.values()):
            if self._used <= budget:
                return
            if entry.status is ModelStatus.READY and entry.users == 0:
                _log.info(
                    "evicting model %s:%d (%d bytes) to stay within the memory budget",
                    *entry.key,
                    entry.size,
                )
                self._forget(entry)
                task = asyncio.get_running_loop().create_task(self._stop(entry))
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        if incoming and self._used > budget:
            # Only when loading: on release this would log once per request.
            _log.warning(
                "models in use need %d bytes, over the %d-byte budget (loading %d more)",
                self._used,
                budget,
                incoming,
            )

    def _forget(self, entry: CachedModel) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            if entry.status is not ModelStatus.UNAVAILABLE:
                self._used -= entry.size

    async def _stop(self, entry: CachedModel) -> None:
        task = entry._task
        if task is not None:
            await asyncio.shield(task)
        await asyncio.gather(*(scheduler.close() for scheduler in entry.unique_schedulers()))
        model, entry.model = entry.model, None
        if model is not None:
            self._release(model)
            if self._hooks.evicted is not None:
                self._hooks.evicted(entry.info)

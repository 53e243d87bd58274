"""The serving engine: the one data plane every transport calls.

:class:`Engine` takes an :class:`~aimass.contract.request.InferRequest`, asks
its :class:`~aimass.serving.router.Router` which version answers the
reference, checks the inputs against that version's signature, takes the
version from its :class:`~aimass.serving.cache.ModelCache` (loading it
through the :class:`~aimass.serving.backend.Backend` on first use) and hands
the request to the version's scheduler for the request's capability. Model
metadata, readiness and the repository's load and unload go through it too.
It knows nothing of HTTP: the server package turns its results and
:class:`~aimass.errors.AimassError` codes into responses.

The engine receives its collaborators (router, backend, schedulers,
observer); :func:`aimass.serving.factory.build_engine` assembles the defaults.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from aimass.contract.reference import ModelRef
from aimass.contract.request import InferRequest, InferResult
from aimass.contract.runtime import Capability
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import ModelInfo, VersionInfo
from aimass.runtimes import runtime_class
from aimass.runtimes.model import LoadedModel
from aimass.serving.backend import Backend
from aimass.serving.cache import ModelCache, ModelState
from aimass.serving.checks import InputCheck, select_outputs
from aimass.serving.observer import NULL_OBSERVER, Observer, hooks
from aimass.serving.router import Router
from aimass.serving.scheduler import Schedulers
from aimass.settings import ServingSettings

__all__ = ["Engine", "startup_error"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_CANNOT = {
    Capability.PREDICT: "does not predict",
    Capability.PREDICT_PROBA: "does not predict probabilities",
    Capability.EMBED: "is not an embedding model",
}


def startup_error(ref: str, error: Exception) -> AimassError:
    """Why the server does not start: the start-up model ``ref`` failed with ``error``.

    Anything but an :class:`AimassError` is a bug, whose traceback the caller logs.
    """
    if isinstance(error, AimassError):
        code, why = error.code, error.message
    else:
        code, why = ErrorCode.INTERNAL, "the log has details"
    return AimassError(
        code, f"could not load start-up model {ref}: {why} (--allow-missing serves without it)"
    )


class Engine:
    """Batched, cached inference over a router and a backend; see the module docstring.

    ``preloaded`` versions, with models already loaded (by a supervisor
    before it forked this worker), are cached READY from the start.
    """

    def __init__(
        self,
        settings: ServingSettings,
        *,
        router: Router,
        backend: Backend,
        schedulers: Schedulers,
        observer: Observer = NULL_OBSERVER,
        clock: Callable[[], float] = time.monotonic,
        preloaded: Iterable[tuple[VersionInfo, LoadedModel]] = (),
    ) -> None:
        self.settings = settings
        self._router = router
        self._backend = backend
        told = hooks(observer)
        self._received, self._responded, self._failed = told.received, told.responded, told.failed
        budget = settings.memory_budget_mb
        self._cache = ModelCache(
            backend.load,
            schedulers.for_model,
            backend.release,
            budget_bytes=None if budget is None else int(budget * 1024 * 1024),
            retry_after=settings.load_retry_s,
            observer=observer,
            clock=clock,
        )
        # Models loaded before this engine existed (before a fork, to share
        # their memory) are served as they are, never loaded again.
        for info, model in preloaded:
            self._cache.seed(info, model)
        self._checkers: dict[tuple[str, int], InputCheck] = {}
        self._refs: dict[tuple[str, int | None], ModelRef] = {}
        self._started = False
        self._startup: tuple[ModelRef, ...] = ()
        self._closing = False
        self._in_flight = 0
        self._drained: asyncio.Event | None = None
        self._closed: asyncio.Future[None] | None = None
        # Bound by start(): CPython 3.11's get_running_loop() asks the OS for
        # the process id on every call, a system call per request.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ready(self) -> bool:
        """Whether the engine takes requests: started and not closing."""
        return self._started and not self._closing

    async def start(self, preload: Sequence[str] = (), *, allow_missing: bool = True) -> None:
        """Load the ``preload`` references, then become ready.

        A reference that fails to resolve or load is logged (and shown
        UNAVAILABLE in :meth:`index` when it resolved). With ``allow_missing``
        the engine starts anyway; without, the start fails with the first
        such error, its message naming the model, and the engine stays not ready.
        """
        self._loop = asyncio.get_running_loop()
        self._startup = tuple(ModelRef.parse(ref) for ref in preload)
        results = await asyncio.gather(*(self.load(ref) for ref in preload), return_exceptions=True)
        for ref, result in zip(preload, results, strict=True):
            if isinstance(result, AimassError):
                if not allow_missing:
                    raise startup_error(ref, result) from result
                _log.warning("could not preload model %s: %s", ref, result.message)
            elif isinstance(result, Exception):
                _log.error("could not preload model %s", ref, exc_info=result)
                if not allow_missing:
                    raise startup_error(ref, result) from result
            elif isinstance(result, BaseException):
                raise result
        self._started = True

    async def serves_startup_models(self) -> bool:
        """Whether the server is ready: :attr:`ready`, every start-up model loaded, none stalled.

        A start-up model that failed (or was evicted) starts loading again, as
        a model readiness probe would, so the server comes back by itself.
        """
        if not self.ready:
            return False
        for ref in self._startup:
            info = self._router.cached(ref)
            if info is None:
                try:
                    info = await self._router.resolve(ref)
                except AimassError:
                    return False
            if not self._cache.warm(info):
                return False
        return True

    async def close(self) -> None:
        """Stop taking requests, let the ones in flight finish, then release every model.

        Calling it again (even concurrently) waits for the same shutdown.
        """
        if self._closed is None:
            self._closing = True
            self._closed = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closed)

    async def _shutdown(self) -> None:
        if self._in_flight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self._cache.close()
        # Every call has returned by now.
        self._backend.close()
        self._router.close()

    async def infer(self, request: InferRequest) -> InferResult:
        """Run one request on the version its reference names and return the outputs asked for.

        Inputs are checked against the signature before joining a batch, so
        a bad request fails alone with INVALID_INPUT. Raises NOT_FOUND,
        INVALID_INPUT (also for a capability the version lacks), OVERLOADED
        (queue full), TIMEOUT (the request's ``timeout`` seconds, default
        ``request_timeout_s``), NOT_READY (closing) or the model's error.
        """
        loop = self._loop
        if loop is None or not self._started or self._closing:
            raise AimassError(ErrorCode.NOT_READY, "the server is not ready for requests")
        timeout = request.timeout
        # A clock of microseconds: uvloop's moves in whole milliseconds, a fast model's whole call.
        request.started = time.perf_counter()
        deadline = request.deadline = loop.time() + (
            self.settings.request_timeout_s if timeout is None else timeout
        )
        received = self._received
        if received is not None:
            received(request)
        self._in_flight += 1
        try:
            ref = self._refs.get((request.model, request.version))
            if ref is None:
                ref = self._parse(request.model, request.version)
            # The common case (routed recently, already loaded) never suspends
            # before the scheduler; only the slow paths pay for a timeout scope.
            info = self._router.cached(ref, request)
            if info is None:
                info = await _within(deadline, self._router.resolve(ref, request), request.model)
            request.served = (info.model, info.version)
            names = None if request.outputs is None else request.output_names
            request.inputs = self._checker(info).check(request.inputs, names, request.missing)
            entry = self._cache.acquire_ready(info)
            if entry is None:
                entry = await _within(deadline, self._cache.acquire(info), request.model)
            try:
                scheduler = entry.schedulers.get(request.capability)
                if scheduler is None:
                    raise _incapable(request.model, request.capability, info)
                result = await scheduler.submit(request)
            finally:
                self._cache.release(entry)
        except AimassError as exc:
            if self._failed is not None:
                self._failed(request, exc)
            raise
        finally:
            self._in_flight -= 1
            if self._drained is not None and not self._in_flight:
                self._drained.set()
        if names is not None:
            result = select_outputs(info, result, names)
        answer = InferResult(info.model, info.version, result)
        responded = self._responded
        if responded is not None:
            responded(request, answer)
        return answer

    async def metadata(self, model: str, version: int | None = None) -> VersionInfo:
        """The version a reference names, with its manifest and signature."""
        return await self._router.resolve(ModelRef.parse(model, version))

    async def versions(self, name: str) -> list[int]:
        """The numbers of a model's ready versions, oldest first."""
        return [info.version for info in await self._router.versions(name)]

    async def models(self) -> list[ModelInfo]:
        """Every model that can be called."""
        return await self._router.models()

    async def model(self, name: str) -> ModelInfo:
        """One model; NOT_FOUND if there is none."""
        return await self._router.model(name)

    @staticmethod
    def require(info: VersionInfo, capability: Capability, model: str) -> None:
        """INVALID_INPUT unless the version ``model`` named can do ``capability``.

        For an adapter that must know before it builds the request; a request
        for a capability the version lacks is refused the same way anyway.
        """
        if capability not in runtime_class(info.manifest.runtime).capabilities_for(info.manifest):
            raise _incapable(model, capability, info)

    async def is_ready(self, model: str, version: int | None = None) -> bool:
        """Whether the version a reference names is loaded and not stalled; NOT_FOUND if none.

        Stalled: its recent calls all overran their deadlines (a hung model).

        A version that is not loaded starts loading (within the memory
        budget), so a readiness probe alone brings a model up.
        """
        return self._cache.warm(await self.metadata(model, version))

    async def load(self, model: str) -> None:
        """Load the version a reference names into the cache (retrying a failed load)."""
        info = await self._router.resolve(ModelRef.parse(model), fresh=True)
        await self._cache.load(info)

    async def unload(self, model: str) -> None:
        """Drop a version (every version, for a bare name) once its queued requests finish."""
        ref = ModelRef.parse(model)
        version = ref.version
        if ref.version is None and ref.alias is None:
            await self._router.model(ref.name)  # NOT_FOUND for a model that does not exist
        else:
            version = (await self._router.resolve(ref, fresh=True)).version
        self._router.forget(ref.name)
        await self._cache.unload(ref.name, version)

    def index(self) -> list[ModelState]:
        """Every version the cache holds and its status."""
        return self._cache.index()

    # -- per-reference and per-version state ------------------------------------

    def _parse(self, model: str, version: int | None) -> ModelRef:
        # Remembered, since the same few references arrive over and over.
        if len(self._refs) > 4096:  # a bound, not a policy: parsing is cheap
            self._refs.clear()
        ref = self._refs[(model, version)] = ModelRef.parse(model, version)
        return ref

    def _checker(self, info: VersionInfo) -> InputCheck:
        key = (info.model, info.version)
        checker = self._checkers.get(key)
        if checker is None:
            if len(self._checkers) > 4096:  # a bound, not a policy: rebuilding is cheap
                self._checkers.clear()
            checker = self._checkers[key] = InputCheck(info)
        return checker


def _incapable(model: str, capability: Capability, info: VersionInfo) -> AimassError:
    return AimassError(
        ErrorCode.INVALID_INPUT,
        f"model '{model}' {_CANNOT[capability]} (its task is {info.manifest.task.value})",
        param="model",
    )


async def _within(deadline: float, step: Awaitable[_T], model: str) -> _T:
    try:
        async with asyncio.timeout_at(deadline):
            return await step
    except TimeoutError:
        raise AimassError(ErrorCode.TIMEOUT, f"model {model} did not answer in time") from None

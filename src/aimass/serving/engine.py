"""The serving engine: the one data plane every transport calls.

:class:`Engine` resolves a model reference in the registry, validates the
request against the version's signature, takes the version from the
:class:`~aimass.serving.cache.ModelCache` (loading it on first use) and
submits to that version's :class:`~aimass.serving.batcher.Batcher`. It knows
nothing of HTTP: the server package turns its results and
:class:`~aimass.errors.AimassError` codes into responses, and the same object
runs unchanged inside a Ray Serve replica.

A reference is ``name`` (the latest ready version), ``name:3`` or
``name@alias``; an explicit ``version`` argument may be given with a bare name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.registry.signature import Datatype
from aimass.runtimes.base import Arrays
from aimass.runtimes.model import LoadedModel
from aimass.serving.batcher import Batcher
from aimass.serving.cache import ModelCache, ModelState
from aimass.serving.executor import Executor
from aimass.serving.resolver import Resolver, split_ref
from aimass.settings import ServingSettings

__all__ = ["Engine", "InferResult"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


# Not frozen: one is built per request, and a frozen dataclass sets each
# field through object.__setattr__.
@dataclass(slots=True)
class InferResult:
    """The outputs of one request and the version that produced them."""

    model_name: str
    model_version: int
    outputs: Arrays


class Engine:
    """Batched, cached inference over a registry; see the module docstring.

    ``preloaded`` versions, with models already loaded (by a supervisor
    before it forked this worker), are cached READY from the start.
    """

    def __init__(
        self,
        registry: Registry,
        settings: ServingSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        preloaded: Iterable[tuple[VersionInfo, LoadedModel]] = (),
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._registry = registry
        self._executor = Executor(settings.executor_threads, name="aimass-model")
        self._loads = Executor(settings.load_threads, name="aimass-load")
        self._resolver = Resolver(registry, self._loads, ttl=settings.resolve_ttl_s, clock=clock)
        budget = settings.memory_budget_mb
        self._cache = ModelCache(
            self._load_model,
            self._make_batcher,
            self._loads,
            budget_bytes=None if budget is None else int(budget * 1024 * 1024),
            retry_after=settings.load_retry_s,
            clock=clock,
        )
        # Models loaded before this engine existed (before a fork, to share
        # their memory) are served as they are, never loaded again.
        for info, model in preloaded:
            self._cache.seed(info, model)
        self._checkers: dict[tuple[str, int], _InputCheck] = {}
        self._refs: dict[tuple[str, int | None], tuple[str, int | None, str | None]] = {}
        self._started = False
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

    async def start(self, preload: Sequence[str] = ()) -> None:
        """Load the ``preload`` references, then become ready.

        A reference that fails to resolve or load is logged (and shown
        UNAVAILABLE in :meth:`index` when it resolved) but never stops the start.
        """
        self._loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(self.load(ref) for ref in preload), return_exceptions=True)
        for ref, result in zip(preload, results, strict=True):
            if isinstance(result, AimassError):
                _log.warning("could not preload model %s: %s", ref, result.message)
            elif isinstance(result, BaseException):
                _log.error("could not preload model %s", ref, exc_info=result)
        self._started = True

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
        # Every call has returned by now, so the threads are idle.
        self._executor.shutdown(wait=False)
        self._loads.shutdown(wait=False)

    async def infer(
        self,
        model: str,
        version: int | None,
        inputs: Arrays,
        *,
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> InferResult:
        """Run one request through its model's batcher and return the chosen outputs.

        Inputs are checked against the signature before joining a batch, so
        a bad request fails alone with INVALID_INPUT; ``outputs`` selects
        output names (all by default). Raises NOT_FOUND, INVALID_INPUT,
        OVERLOADED (queue full), TIMEOUT (``timeout`` seconds, default
        ``request_timeout_s``), NOT_READY (closing) or the model's error.
        """
        loop = self._loop
        if loop is None or not self._started or self._closing:
            raise AimassError(ErrorCode.NOT_READY, "the server is not ready for requests")
        limit = self.settings.request_timeout_s if timeout is None else timeout
        deadline = loop.time() + limit
        self._in_flight += 1
        try:
            ref = self._refs.get((model, version))
            if ref is None:
                ref = self._split(model, version)
            name, number, alias = ref
            # The common case (resolved recently, already loaded) never suspends
            # before the batcher; only the slow paths pay for a timeout scope.
            info = self._resolver.cached(name, number, alias)
            if info is None:
                info = await _within(deadline, self._resolver.resolve(name, number, alias), model)
            checked = self._checker(info).check(inputs, outputs)
            entry = self._cache.acquire_ready(info)
            if entry is None:
                entry = await _within(deadline, self._cache.acquire(info), model)
            try:
                batcher = entry.batcher
                assert batcher is not None  # acquire returns only READY entries
                result = await batcher.submit(checked, timeout=max(0.0, deadline - loop.time()))
            finally:
                self._cache.release(entry)
        finally:
            self._in_flight -= 1
            if self._drained is not None and not self._in_flight:
                self._drained.set()
        if outputs is not None:
            result = _select(info, result, outputs)
        return InferResult(info.model, info.version, result)

    async def metadata(self, model: str, version: int | None = None) -> VersionInfo:
        """The version a reference names, with its manifest and signature."""
        return await self._resolve(model, version)

    async def is_ready(self, model: str, version: int | None = None) -> bool:
        """Whether the version a reference names is loaded; NOT_FOUND if there is none."""
        info = await self._resolve(model, version)
        return self._cache.is_ready(info.model, info.version)

    async def load(self, model: str) -> None:
        """Load the version a reference names into the cache (retrying a failed load)."""
        name, version, alias = split_ref(model)
        info = await self._resolver.resolve(name, version, alias, fresh=True)
        await self._cache.load(info)

    async def unload(self, model: str) -> None:
        """Drop a version (every version, for a bare name) once its queued requests finish."""
        name, version, alias = split_ref(model)
        if alias is not None:
            version = (await self._resolver.resolve(name, None, alias, fresh=True)).version
        self._resolver.forget(name)
        await self._cache.unload(name, version)

    def index(self) -> list[ModelState]:
        """Every version the cache holds and its status."""
        return self._cache.index()

    # -- collaborators ---------------------------------------------------------

    async def _resolve(self, model: str, version: int | None) -> VersionInfo:
        name, number, alias = split_ref(model, version)
        return await self._resolver.resolve(name, number, alias)

    def _split(self, model: str, version: int | None) -> tuple[str, int | None, str | None]:
        # Remembered, since the same few references arrive over and over.
        if len(self._refs) > 4096:  # a bound, not a policy: splitting is cheap
            self._refs.clear()
        ref = self._refs[(model, version)] = split_ref(model, version)
        return ref

    def _checker(self, info: VersionInfo) -> _InputCheck:
        key = (info.model, info.version)
        checker = self._checkers.get(key)
        if checker is None:
            if len(self._checkers) > 4096:  # a bound, not a policy: rebuilding is cheap
                self._checkers.clear()
            checker = self._checkers[key] = _InputCheck(info)
        return checker

    def _load_model(self, name: str, version: int) -> LoadedModel:
        return self._registry.load(name, version)

    def _make_batcher(self, model: LoadedModel) -> Batcher:
        limits = self.settings.batching(model.name, model.version)
        return Batcher(
            # Inputs were validated per request, so the runtime is called
            # directly rather than validating the merged batch again.
            model.runtime.predict,
            self._executor,
            name=f"{model.name}:{model.version}",
            max_batch_size=limits.max_batch_size,
            max_delay=limits.max_delay_ms / 1000,
            fill_fraction=limits.fill_fraction,
            queue_size=self.settings.queue_size,
            clock=self._clock,
        )


async def _within(deadline: float, step: Awaitable[_T], model: str) -> _T:
    try:
        async with asyncio.timeout_at(deadline):
            return await step
    except TimeoutError:
        raise AimassError(ErrorCode.TIMEOUT, f"model {model} did not answer in time") from None


class _InputCheck:
    """:meth:`Signature.validate_inputs` with a fast path for requests that already conform.

    Most requests arrive with exactly the declared names, dtypes and fixed
    dimensions; checking that directly costs a fraction of the general
    validation, which still handles everything else (conversions and the
    error messages).
    """

    def __init__(self, info: VersionInfo) -> None:
        signature = info.manifest.signature
        self._signature = signature
        self._specs = {
            spec.name: (
                None if spec.datatype is Datatype.BYTES else spec.datatype.numpy,
                len(spec.shape),
                tuple((axis, size) for axis, size in enumerate(spec.shape) if size != -1),
            )
            for spec in signature.inputs
        }
        self._outputs = frozenset(spec.name for spec in signature.outputs)

    def check(self, inputs: Arrays, outputs: Sequence[str] | None) -> Arrays:
        """The inputs, converted where needed; INVALID_INPUT if they do not fit."""
        rows = self._conforming_rows(inputs)
        if rows is None:
            inputs = self._signature.validate_inputs(inputs)
            first = next(iter(inputs.values()), None)
            rows = 1 if first is None else len(first)
        if rows == 0:
            raise AimassError(ErrorCode.INVALID_INPUT, "the request has no rows")
        if outputs is not None and self._outputs:
            unknown = [name for name in outputs if name not in self._outputs]
            if unknown:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"unknown output(s) {unknown}; the model returns {sorted(self._outputs)}",
                    field=unknown[0],
                )
        return inputs

    def _conforming_rows(self, inputs: Arrays) -> int | None:
        if len(inputs) != len(self._specs) or not inputs:
            return None
        rows = -1
        for name, value in inputs.items():
            spec = self._specs.get(name)
            if spec is None or not isinstance(value, np.ndarray):
                return None
            dtype, ndim, fixed = spec
            if dtype is None or value.dtype != dtype or value.ndim != ndim:
                return None
            shape = value.shape
            for axis, size in fixed:
                if shape[axis] != size:
                    return None
            if rows == -1:
                rows = shape[0]
            elif shape[0] != rows:
                return None
        return rows


def _select(info: VersionInfo, result: Arrays, outputs: Sequence[str]) -> Arrays:
    try:
        return {name: result[name] for name in outputs}
    except KeyError as exc:
        # Only reachable for signatures that declare no outputs.
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"model {info.ref} returned no output {exc.args[0]!r}; it returned {sorted(result)}",
        ) from None

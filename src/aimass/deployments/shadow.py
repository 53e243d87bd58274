"""Shadow traffic: copies of live requests sent to shadow versions, off the caller's path.

The :class:`ShadowTap` is an observer: when the engine has answered a
request to a deployment that has shadows, it sends, with each shadow's
``sample`` probability, a copy of the request (its already checked inputs,
the outputs it asked for) to the shadow's version in a task of its own, and
returns at once: the caller's answer never waits for a shadow, and a
shadow's answer is never returned to anyone. Each copy has its own deadline
(``shadow_timeout_s``), and the copies in flight are bounded
(``shadow_concurrency`` per server, held copies included): beyond the bound a
copy is dropped and counted, never queued, so a slow shadow costs the live
path nothing but the count. Copies to the same shadow are held for up to
``shadow_hold_ms`` and sent as one request, their rows stacked: one shadow
call and one comparison for the lot, run in one go between live requests,
rather than one per live request, each right after it (a shadow as fast as
the live version would otherwise cost each live request about its own work
again). The shadow's answer is compared with the live one
(:class:`~aimass.deployments.compare.Comparison`) and, with its latency and
errors, counted by the :class:`~aimass.deployments.stats.StatsRecorder`
under the role ``shadow``.

Which deployments have which shadows the tap reads, for a request the
router sent by a deployment's weights (``request.deployment``; a version
pinned by hand is someone debugging, not traffic), from the tables the router routes by
(:meth:`~aimass.deployments.router.DeploymentRouter.table`), so a shadow
starts and stops with the same swap that changes the deployment's targets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aimass.contract.request import InferRequest, InferResult
from aimass.contract.runtime import Arrays, Capability
from aimass.deployments.stats import StatsRecorder, is_server_error
from aimass.errors import AimassError
from aimass.serving.observer import Observer
from aimass.settings import DeploymentSettings

__all__ = ["ShadowTap", "Table", "Version"]

_log = logging.getLogger(__name__)

Infer = Callable[[InferRequest], Awaitable[InferResult]]


class Version(Protocol):
    """A version a shadow resolved to (a :class:`~aimass.registry.records.VersionInfo`)."""

    @property
    def model(self) -> str:
        """The model's name."""

    @property
    def version(self) -> int:
        """The version's number."""


class Table(Protocol):
    """What the tap reads of a deployment's route table: its shadows and their samples."""

    @property
    def shadows(self) -> Sequence[tuple[Version, float]]:
        """Each shadow's version and the fraction of requests it gets a copy of."""


@dataclass(slots=True)
class _Copy:
    """One live request and its answer, for a shadow."""

    request: InferRequest
    answer: InferResult
    live_s: float


@dataclass(slots=True)
class _Held:
    """Copies to one shadow waiting to go as one call, and the timer that sends them."""

    deployment: str
    model: str
    version: int
    copies: list[_Copy]
    timer: asyncio.TimerHandle | None = None


_Key = tuple[Any, ...]


def _batch_key(deployment: str, model: str, version: int, request: InferRequest) -> _Key | None:
    """What copies must share to stack into one request; None: it goes alone."""
    if request.parameters or request.missing:
        return None  # parameters apply to a whole request: never mix two requests' parameters
    shapes = []
    for name, array in request.inputs.items():
        if array.ndim == 0:
            return None
        shapes.append((name, array.dtype.str, array.shape[1:]))
    return (deployment, model, version, request.capability, request.outputs, tuple(shapes))


def _stacked(parts: Sequence[Arrays]) -> Arrays:
    """The arrays of several requests, rows in order (ValueError/KeyError if they do not fit)."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class ShadowTap(Observer):
    """Sends sampled copies of deployments' requests to their shadows (module docstring).

    :meth:`bind` gives, once the engine built with this observer runs, its
    ``infer``, which answers the copies, and ``tables``, a deployment's route
    table by name (None: not one); ``chance`` draws in [0, 1).
    """

    def __init__(
        self,
        recorder: StatsRecorder,
        settings: DeploymentSettings,
        *,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self._recorder = recorder
        self._limit = settings.shadow_concurrency
        self._timeout = settings.shadow_timeout_s
        self._hold = settings.shadow_hold_ms / 1000
        self._chance = chance
        self._tables: Callable[[str], Table | None] = lambda name: None
        self._infer: Infer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[_Key, _Held] = {}
        self._copies = 0

    @property
    def in_flight(self) -> int:
        """Copies held or sent and not yet answered."""
        return self._copies

    def bind(self, infer: Infer, tables: Callable[[str], Table | None]) -> None:
        """Answer copies with ``infer`` of the deployments ``tables`` has, on the running loop."""
        self._infer = infer
        self._tables = tables
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Send no more copies, forget those held and cancel those in flight."""
        self._infer = None
        for held in self._held.values():
            if held.timer is not None:
                held.timer.cancel()
            self._copies -= len(held.copies)
        self._held.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def responded(self, request: InferRequest, result: InferResult) -> None:
        """Hold (or send) the copies of an answered request to a deployment."""
        deployment = request.deployment
        if deployment is None or self._infer is None:
            return
        table = self._tables(deployment)
        if table is None or not table.shadows:
            return
        loop = self._loop
        assert loop is not None  # bound with infer
        live_s = time.perf_counter() - request.started
        for version, sample in table.shadows:
            if sample < 1.0 and self._chance() >= sample:
                continue
            model, number = version.model, version.version
            if self._copies >= self._limit:
                self._recorder.comparison(deployment, f"{model}:{number}").drop()
                continue
            self._copies += 1
            copy = _Copy(request, result, live_s)
            key = _batch_key(deployment, model, number, request) if self._hold > 0 else None
            if key is None:
                self._send(_Held(deployment, model, number, [copy]))
                continue
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = _Held(deployment, model, number, [copy])
                held.timer = loop.call_later(self._hold, self._flush, key)
            else:
                held.copies.append(copy)
        if self._copies >= self._limit:
            # No copy can join those held any more: waiting would only delay them.
            for key in list(self._held):
                self._flush(key)

    def _flush(self, key: _Key) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            if held.timer is not None:
                held.timer.cancel()
            self._send(held)

    def _send(self, held: _Held) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._shadow(held))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow(self, held: _Held) -> None:
        try:
            await self._call(held)
        finally:
            self._copies -= len(held.copies)

    async def _call(self, held: _Held) -> None:
        infer = self._infer
        assert infer is not None
        deployment, copies = held.deployment, held.copies
        ref = f"{held.model}:{held.version}"
        first = copies[0].request
        inputs = first.inputs if len(copies) == 1 else _stacked([c.request.inputs for c in copies])
        request = InferRequest(
            model=held.model,
            inputs=inputs,
            version=held.version,
            outputs=first.outputs,
            parameters=first.parameters,
            id=first.id,
            request_id=first.request_id,
            timeout=self._timeout,
            caller=first.caller,
            capability=first.capability,
            binary_output=first.binary_output,
            missing=first.missing,
        )
        started = time.perf_counter()
        try:
            shadow = await infer(request)
        except AimassError as exc:
            error = is_server_error(exc)
            for _ in copies:
                self._recorder.record(
                    deployment, ref, "shadow", time.perf_counter() - started, error=error
                )
            return
        except Exception:
            _log.exception("shadow %s of %s failed", ref, deployment)
            for _ in copies:
                self._recorder.record(
                    deployment, ref, "shadow", time.perf_counter() - started, error=True
                )
            return
        shadow_s = time.perf_counter() - started
        for _ in copies:
            self._recorder.record(deployment, ref, "shadow", shadow_s)
        try:
            self._compare(held, shadow.outputs, shadow_s)
        except Exception:  # a comparison bug must not take the server's loop down with it
            _log.exception("could not compare shadow %s of %s", ref, deployment)

    def _compare(self, held: _Held, shadow: Arrays, shadow_s: float) -> None:
        copies = held.copies
        comparison = self._recorder.comparison(held.deployment, f"{held.model}:{held.version}")
        embedding = copies[0].request.capability is Capability.EMBED
        try:
            live = (
                copies[0].answer.outputs
                if len(copies) == 1
                else _stacked([c.answer.outputs for c in copies])
            )
        except (KeyError, ValueError):  # the live answers' outputs do not stack: one by one
            start = 0
            for c in copies:
                rows = len(next(iter(c.request.inputs.values())))
                part = {name: array[start : start + rows] for name, array in shadow.items()}
                start += rows
                comparison.add(
                    c.answer.outputs, part, live_s=c.live_s, shadow_s=shadow_s, embedding=embedding
                )
            return
        live_s = [c.live_s for c in copies]
        comparison.add_many(live, shadow, live_s=live_s, shadow_s=shadow_s, embedding=embedding)

"""Schedulers: how the requests to one loaded version reach its backend, by capability.

A scheduler takes a version's requests one at a time and decides when and
with whom each one runs. :class:`Schedulers` says which scheduler serves each
:class:`~aimass.contract.runtime.Capability`; the engine gives every loaded
version its own set and sends a request to the one its capability names, so
a version without that capability has none and the request is refused.

Every capability today runs on the :class:`~aimass.serving.batcher.Batcher`
(one per version, shared by its capabilities), which merges concurrent
requests into one model call. A capability that needs another discipline
(token-level generation) brings its own scheduler class and one entry here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol

from aimass.contract.request import InferRequest
from aimass.contract.runtime import Arrays, Capability
from aimass.runtimes.model import LoadedModel
from aimass.serving.backend import Backend
from aimass.serving.batcher import Batcher
from aimass.serving.observer import NULL_OBSERVER, Observer
from aimass.settings import ServingSettings

__all__ = ["Scheduler", "SchedulerFactory", "Schedulers", "batching_schedulers"]


class Scheduler(Protocol):
    """Runs one version's requests through its backend."""

    overruns: int
    """Calls abandoned because every request in them had timed out."""

    @property
    def stalled(self) -> bool:
        """Whether the version's recent calls all overran their deadlines (it is not ready)."""

    async def submit(self, request: InferRequest) -> Arrays:
        """The request's own outputs, once it has run (its deadline is the request's)."""

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, then stop."""


SchedulerFactory = Callable[[LoadedModel], Scheduler]
"""Makes the scheduler of one freshly loaded version."""


class Schedulers:
    """Which scheduler serves each capability; one instance per factory and version."""

    def __init__(self, factories: Mapping[Capability, SchedulerFactory]) -> None:
        self._factories = dict(factories)

    def for_model(self, model: LoadedModel) -> dict[Capability, Scheduler]:
        """The schedulers of ``model``'s capabilities (those this table serves)."""
        made: dict[SchedulerFactory, Scheduler] = {}
        found: dict[Capability, Scheduler] = {}
        for capability in model.capabilities:
            factory = self._factories.get(capability)
            if factory is not None:
                if factory not in made:
                    made[factory] = factory(model)
                found[capability] = made[factory]
        return found


def batching_schedulers(
    settings: ServingSettings,
    backend: Backend,
    *,
    observer: Observer = NULL_OBSERVER,
    clock: Callable[[], float] = time.monotonic,
) -> Schedulers:
    """Every capability on one :class:`Batcher` per version, with its batching settings."""

    def batcher(model: LoadedModel) -> Scheduler:
        limits = settings.batching(model.name, model.version)
        return Batcher(
            model,
            backend,
            max_batch_size=limits.max_batch_size,
            max_delay=limits.max_delay_ms / 1000,
            fill_fraction=limits.fill_fraction,
            queue_size=settings.queue_size,
            admission_wait=settings.admission_wait_ms / 1000,
            observer=observer,
            clock=clock,
        )

    return Schedulers(dict.fromkeys(Capability, batcher))

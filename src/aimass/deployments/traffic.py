"""What a server watches of its deployments' traffic: statistics, shadow copies, canary guards.

:class:`TrafficWatch` is the one object the composition root builds for it:
its :attr:`~TrafficWatch.observer` goes into the engine when the engine is
built (per-version statistics and the shadow tap, fanned out), and
:meth:`~TrafficWatch.start` binds them to the running engine and its
deployment router and starts the guard loop, which writes the statistics
and judges the canaries every ``stats_interval_s``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aimass.contract.reference import ModelRef
from aimass.contract.request import InferRequest, InferResult
from aimass.deployments.guarding import GuardLoop, Service, Stats
from aimass.deployments.shadow import ShadowTap, Table
from aimass.deployments.stats import StatsObserver, StatsRecorder, process_name
from aimass.errors import AimassError
from aimass.registry.registry import Registry
from aimass.serving.observer import Observer
from aimass.settings import DeploymentSettings

__all__ = ["TrafficWatch"]


class _Deployed(Observer):
    """The statistics and the tap, told only of requests a deployment's weights routed.

    Every request the engine answers is told, deployments' or not: one call
    that tests ``request.deployment`` costs a plain model's request less
    than a fan-out's call of each, which would each test it again.
    """

    def __init__(self, stats: StatsObserver, shadows: ShadowTap) -> None:
        self._stats = stats
        self._shadows = shadows

    def responded(self, request: InferRequest, result: InferResult) -> None:
        """Count the answer and send its shadow copies."""
        if request.deployment is not None:
            self._stats.responded(request, result)
            self._shadows.responded(request, result)

    def failed(self, request: InferRequest | None, error: AimassError) -> None:
        """Count the failure (the tap copies only answered requests)."""
        if request is not None and request.deployment is not None:
            self._stats.failed(request, error)


class TrafficWatch:
    """Statistics, shadows and guards of one serving process (see the module docstring)."""

    def __init__(self, settings: DeploymentSettings, *, process: str | None = None) -> None:
        self.settings = settings
        self.recorder = StatsRecorder(process or process_name(), bucket_s=settings.stats_bucket_s)
        self._stats = StatsObserver(self.recorder)
        self.shadows = ShadowTap(self.recorder, settings)
        self.observer: Observer = _Deployed(self._stats, self.shadows)
        """What the engine must be built with."""
        self._guard: GuardLoop | None = None

    async def start(
        self,
        infer: Callable[[InferRequest], Awaitable[InferResult]],
        tables: Callable[[str], Table | None],
        service: Service,
        store: Stats,
        registry: Registry,
    ) -> None:
        """Watch the engine whose ``infer`` answers shadow copies, routing by ``tables``."""
        self.shadows.bind(infer, tables)

        def resolve(ref: str) -> str:
            return registry.resolve(ModelRef.parse(ref)).ref

        self._guard = GuardLoop(
            service, store, resolve, self.recorder, interval_s=self.settings.stats_interval_s
        )
        self._guard.start()

    async def stop(self) -> None:
        """Send no more shadow copies, stop judging, write the last statistics."""
        await self.shadows.close()
        if self._guard is not None:
            await self._guard.stop()

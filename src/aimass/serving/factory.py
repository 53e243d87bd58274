"""The engine's default collaborators, assembled in one place.

:func:`build_engine` gives the engine ``aimass serve`` runs: a router over the
registry, the local thread backend, a batcher per version for every
capability, and the observer it is given (none by default). Tests and other
deployments build an :class:`~aimass.serving.engine.Engine` from their own parts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.runtimes.model import LoadedModel
from aimass.serving.backend import ThreadBackend
from aimass.serving.engine import Engine
from aimass.serving.executor import Executor
from aimass.serving.observer import NULL_OBSERVER, Observer
from aimass.serving.router import RegistryRouter, Router
from aimass.serving.scheduler import batching_schedulers
from aimass.settings import ServingSettings

__all__ = ["build_engine"]


def build_engine(
    registry: Registry,
    settings: ServingSettings,
    *,
    observer: Observer = NULL_OBSERVER,
    preloaded: Iterable[tuple[VersionInfo, LoadedModel]] = (),
    clock: Callable[[], float] = time.monotonic,
    route: Callable[[Router], Router] | None = None,
) -> Engine:
    """The engine over ``registry`` with the default router, backend and schedulers.

    ``route`` wraps the registry's router in one that answers some references
    itself (the deployment router, which the serving package cannot import).
    """
    backend = ThreadBackend(
        registry.load, threads=settings.executor_threads, load_threads=settings.load_threads
    )
    router: Router = RegistryRouter(
        registry,
        Executor(settings.load_threads, name="aimass-lookup"),
        ttl=settings.resolve_ttl_s,
        clock=clock,
    )
    if route is not None:
        router = route(router)
    return Engine(
        settings,
        router=router,
        backend=backend,
        schedulers=batching_schedulers(settings, backend, observer=observer, clock=clock),
        observer=observer,
        clock=clock,
        preloaded=preloaded,
    )

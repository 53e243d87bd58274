"""Proof that a version can serve before a deployment sends it traffic: load it, call it once.

:class:`~aimass.deployments.service.Deployments` passes each version a change
newly adds to a ``verify`` callable, before anything is written. Both here
load the version in an engine and send it the warm-up request built from its
signature (:func:`~aimass.deployments.warmup.warmup_request`); whatever
either raises, the service refuses the change with (CONFLICT, the
deployment as it was):

* :func:`in_process` (the CLI and the SDK) starts an engine of its own for
  the check, as a server would, and closes it;
* :func:`in_engine` (a server) loads the version in the server's own engine,
  so the version a change adds is already warm when the server routes to it.
"""

from __future__ import annotations

import asyncio

from aimass.deployments.service import Verify
from aimass.deployments.warmup import warmup_request
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.serving.engine import Engine
from aimass.serving.factory import build_engine
from aimass.settings import ServingSettings

__all__ = ["in_engine", "in_process", "warm"]


async def warm(engine: Engine, info: VersionInfo) -> None:
    """Load ``info`` in ``engine`` and answer one warm-up request; raises what failed."""
    await engine.load(f"{info.model}:{info.version}")
    await engine.infer(warmup_request(info))


def in_process(registry: Registry, settings: ServingSettings) -> Verify:
    """A ``verify`` that checks each version in an engine of its own, started and closed here.

    For callers outside a server (the CLI, the SDK): it must not be called
    from a running event loop.
    """

    async def check(info: VersionInfo) -> None:
        engine = build_engine(registry, settings)
        await engine.start()
        try:
            await warm(engine, info)
        finally:
            await engine.close()

    def verify(info: VersionInfo) -> None:
        asyncio.run(check(info))

    return verify


def in_engine(engine: Engine) -> Verify:
    """A ``verify`` that checks each version in a server's ``engine``, from a worker thread.

    The server's routes call the (synchronous) service in a worker thread
    (``run_in_threadpool``); the check runs on the server's event loop, where
    the engine lives.
    """
    import anyio.from_thread  # the server extra's, as the thread pool calling this is

    def verify(info: VersionInfo) -> None:
        anyio.from_thread.run(warm, engine, info)

    return verify

"""Proof that a version can serve before a deployment sends it traffic: load it, call it once.

:class:`~aimass.deployments.service.Deployments` passes each version a change
newly adds to a ``verify`` callable, before anything is written. Both here
load the version in an engine and send it the warm-up request built from its
signature (:func:`~aimass.deployments.warmup.warmup_request`), so a version
that cannot load, or fails on a well-formed request, is refused with the
reason and the deployment stays as it was:

* :func:`in_process` (the CLI and the SDK) starts an engine of its own for
  the check, as a server would, and closes it;
* :func:`in_engine` (a server) loads the version in the server's own engine,
  so the version a change adds is already warm when the server routes to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio.from_thread

from aimass.deployments.warmup import warmup_request
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.serving.engine import Engine
from aimass.serving.factory import build_engine
from aimass.settings import ServingSettings

__all__ = ["Verify", "in_engine", "in_process", "warm"]

Verify = Callable[[VersionInfo], None]
"""Returns when the version serves; raises CONFLICT saying why when it does not."""


async def warm(engine: Engine, info: VersionInfo) -> None:
    """Load ``info`` in ``engine`` and answer one warm-up request; CONFLICT with the reason."""
    ref = f"{info.model}:{info.version}"
    try:
        await engine.load(ref)
        await engine.infer(warmup_request(info))
    except Exception as exc:
        raise refused(ref, exc) from exc


def refused(ref: str, exc: Exception) -> AimassError:
    """The refusal of a version that failed to load or to warm up with ``exc``."""
    reason = exc.public_message if isinstance(exc, AimassError) else f"{type(exc).__name__}: {exc}"
    return AimassError(
        ErrorCode.CONFLICT,
        f"{ref} failed to load or to answer its warm-up request, so the deployment is "
        f"unchanged: {reason}",
        field="ref",
    )


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

    def verify(info: VersionInfo) -> None:
        anyio.from_thread.run(warm, engine, info)

    return verify

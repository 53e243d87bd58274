"""The deployment controller: each server converges on the deployments the database describes.

A :class:`DeploymentController` runs in every serving process (the single
server, each prefork worker, a test's server) for as long as the app's
lifespan. Every ``poll_interval_s`` it asks the store for its
:meth:`~aimass.deployments.store.DeploymentStore.mark`, two event ids that
move whenever a deployment changes or an alias moves, anywhere; the query
runs on a thread of its own, never on the event loop. When the mark moves it
reads every spec and resolves its references (an alias to the version it
points at now, so a deployment that follows an alias rolls forward when it
moves) and, for each deployment whose versions changed:

1. loads each version it newly needs in the engine and warms it with one
   request built from its signature
   (:func:`~aimass.deployments.warmup.warmup_request`);
2. installs the new :class:`~aimass.deployments.router.RouteTable` in the
   router, in one assignment, so traffic switches with no request in between
   seeing half of it;
3. drains and unloads the versions that it loaded and no deployment uses
   any more (never a start-up model, nor one loaded before it needed it).

A version that cannot resolve, load or warm leaves its deployment's table as
it was; the failure is logged and shown by :meth:`DeploymentController.status`
(the server's ``GET /v1/deployments/{name}``) until a later pass succeeds.
Failed deployments are tried again every ``_RETRY_POLLS`` polls. The first
pass runs in :meth:`DeploymentController.start`, before the server says it
is ready, so deployments survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aimass.contract.reference import ModelRef
from aimass.deployments.records import Deployment
from aimass.deployments.router import DeploymentRouter, RouteTable
from aimass.deployments.warmup import warmup_request
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.serving.engine import Engine
from aimass.serving.executor import Executor
from aimass.settings import DeploymentSettings

__all__ = ["DeploymentController", "DesiredState"]

_log = logging.getLogger(__name__)

# A deployment that failed is tried again this many polls later, not at every
# poll: a version that does not load usually fails the same way again.
_RETRY_POLLS = 10


class DesiredState(Protocol):
    """What the controller reads: the store's change mark and every deployment."""

    def mark(self) -> tuple[int, int]:
        """Ids that move whenever a deployment changes or an alias moves."""

    def list(self) -> Sequence[Deployment]:
        """Every deployment, with its spec and revision."""


@dataclass
class _Status:
    """What this server serves for one deployment, and its last failure."""

    revision: int | None = None
    wanted: int | None = None
    error: str | None = None
    failed_at: float | None = None


class DeploymentController:
    """Converges one server's router and engine on the stored deployments (module docstring)."""

    def __init__(
        self,
        store: DesiredState,
        registry: Registry,
        engine: Engine,
        router: DeploymentRouter,
        settings: DeploymentSettings,
    ) -> None:
        self._store = store
        self._registry = registry
        self._engine = engine
        self._router = router
        self._interval = settings.poll_interval_s
        # One thread: the controller's queries are few, and in order.
        self._executor = Executor(1, name="aimass-deployments")
        self._mark: tuple[int, int] | None = None
        self._status: dict[str, _Status] = {}
        # Versions this controller loaded, which it may unload again.
        self._owned: set[tuple[str, int]] = set()
        self._polls = 0
        self._checked_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Converge once (so the server starts serving its deployments), then keep polling."""
        try:
            await self.poll()
        except Exception:
            # The server starts anyway: a database that is down now may be back at the next poll.
            _log.exception("could not read the deployments at start-up")
        self._task = asyncio.create_task(self._run(), name="aimass-deployments")

    async def stop(self) -> None:
        """Stop polling (the engine's close releases the versions) and the query thread."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=False)

    def status(self, name: str) -> dict[str, Any]:
        """The state of deployment ``name`` in this server, JSON-ready.

        ``revision``: the spec revision it serves (None: none yet);
        ``converged``: it serves the newest revision it has read; ``serving``:
        each target's version and weight in percent, and each shadow's version;
        ``error``: why the newest revision is not served (None when it is);
        ``process``: this server's process id; ``checked_at``: when it last
        read the database (seconds since the epoch).
        """
        status = self._status.get(name, _Status())
        table = self._router.table(name)
        serving: dict[str, Any] = {"targets": [], "shadows": []}
        if table is not None:
            serving = {
                "targets": [
                    {"ref": t.ref, "version": table.resolved[t.ref].ref, "weight": t.percent}
                    for t in table.spec.targets
                ],
                "shadows": [
                    {"ref": s.ref, "version": table.resolved[s.ref].ref, "sample": s.sample}
                    for s in table.spec.shadows
                ],
            }
        return {
            "revision": status.revision,
            "converged": status.error is None and status.revision == status.wanted,
            "serving": serving,
            "error": status.error,
            "process": os.getpid(),
            "checked_at": self._checked_at,
        }

    async def poll(self) -> bool:
        """One pass: read the mark, and converge if it moved (or a failure is due a retry).

        Returns whether it converged (read the deployments).
        """
        self._polls += 1
        mark = await self._executor.run(self._store.mark)
        self._checked_at = time.time()
        retry = self._polls % _RETRY_POLLS == 0 and any(
            s.error is not None for s in self._status.values()
        )
        if mark == self._mark and not retry:
            return False
        deployments = await self._executor.run(self._store.list)
        await self._converge(deployments)
        # Only once it has acted on them: a failed read is tried again next poll.
        self._mark = mark
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("could not converge on the deployments; trying again")

    async def _converge(self, deployments: Sequence[Deployment]) -> None:
        names = {d.name for d in deployments}
        for deployment in deployments:
            await self._apply(deployment)
        for name in set(self._router.tables()) - names:
            self._router.remove(name)
            _log.info("deployment %s was deleted: no longer served", name)
        for name in set(self._status) - names:
            del self._status[name]
        await self._release_unused()

    async def _apply(self, deployment: Deployment) -> None:
        name, spec = deployment.name, deployment.spec
        status = self._status.setdefault(name, _Status())
        status.wanted = deployment.revision
        try:
            resolved = await self._executor.run(self._resolve, spec.refs())
            current = self._router.table(name)
            if current is not None and current.spec == spec and _same(current.resolved, resolved):
                status.revision, status.error = deployment.revision, None
                return
            have = set() if current is None else current.versions
            new = [info for info in resolved.values() if (info.model, info.version) not in have]
            await asyncio.gather(*(self._warm(info) for info in new))
            self._router.install(RouteTable.build(name, spec, resolved))
        except Exception as exc:
            status.error, status.failed_at = _reason(exc), time.time()
            log = _log.warning if isinstance(exc, AimassError) else _log.error
            log(
                "deployment %s stays as it was: revision %d failed: %s",
                name,
                deployment.revision,
                status.error,
                exc_info=not isinstance(exc, AimassError),
            )
            return
        status.revision, status.error = deployment.revision, None
        _log.info(
            "deployment %s serves revision %d: %s",
            name,
            deployment.revision,
            ", ".join(f"{t.ref}={resolved[t.ref].ref} {t.percent:g}%" for t in spec.targets),
        )

    def _resolve(self, refs: set[str]) -> dict[str, VersionInfo]:
        return {ref: self._registry.resolve(ModelRef.parse(ref)) for ref in sorted(refs)}

    async def _warm(self, info: VersionInfo) -> None:
        key = (info.model, info.version)
        loaded = any((s.name, s.version) == key for s in self._engine.index())
        await self._engine.load(info.ref)
        if not loaded:
            self._owned.add(key)
        try:
            await self._engine.infer(warmup_request(info))
        except AimassError as exc:
            raise AimassError(
                exc.code, f"{info.ref} failed its warm-up call: {exc.message}"
            ) from exc

    async def _release_unused(self) -> None:
        used = set().union(*(t.versions for t in self._router.tables().values()))
        unused = sorted(self._owned - used)
        for model, version in unused:
            self._owned.discard((model, version))
            # Queued requests finish first: the engine drains a version before it drops it.
            with contextlib.suppress(AimassError):
                await self._engine.unload(f"{model}:{version}")
            _log.info("unloaded %s:%d: no deployment uses it", model, version)


def _same(old: Mapping[str, VersionInfo], new: Mapping[str, VersionInfo]) -> bool:
    return {r: (i.model, i.version) for r, i in old.items()} == {
        r: (i.model, i.version) for r, i in new.items()
    }


def _reason(exc: Exception) -> str:
    if isinstance(exc, AimassError):
        return exc.message
    return AimassError(ErrorCode.INTERNAL, "internal error (the server log has details)").message

"""Shadow traffic: copies of live requests sent to shadow versions, off the caller's path.

The :class:`ShadowTap` is an observer: when the engine has answered a
request to a deployment that has shadows, it sends, with each shadow's
``sample`` probability, a copy of the request (its already checked inputs,
the outputs it asked for) to the shadow's version in a task of its own, and
returns at once: the caller's answer never waits for a shadow, and a
shadow's answer is never returned to anyone. Each copy has its own deadline
(``shadow_timeout_s``), and the copies in flight are bounded
(``shadow_concurrency`` per server): beyond the bound a copy is dropped and
counted, never queued, so a slow shadow costs the live path nothing but the
count. The shadow's answer is compared with the live one
(:class:`~aimass.deployments.compare.Comparison`) and, with its latency and
errors, counted by the :class:`~aimass.deployments.stats.StatsRecorder`
under the role ``shadow``.

Which deployments have which shadows the tap reads, for a request that
called a deployment (:func:`~aimass.deployments.stats.called_deployment`),
from the tables the router routes by
(:meth:`~aimass.deployments.router.DeploymentRouter.table`), so a shadow
starts and stops with the same swap that changes the deployment's targets.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aimass.contract.request import InferRequest, InferResult
from aimass.contract.runtime import Capability
from aimass.deployments.stats import StatsRecorder, called_deployment, is_server_error
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
        self._chance = chance
        self._tables: Callable[[str], Table | None] = lambda name: None
        self._infer: Infer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Copies sent and not yet answered."""
        return len(self._tasks)

    def bind(self, infer: Infer, tables: Callable[[str], Table | None]) -> None:
        """Answer copies with ``infer`` of the deployments ``tables`` has, on the running loop."""
        self._infer = infer
        self._tables = tables
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Send no more copies and cancel those in flight."""
        self._infer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def responded(self, request: InferRequest, result: InferResult) -> None:
        """Send the copies of an answered request to a deployment."""
        deployment = called_deployment(request)
        if deployment is None or self._infer is None:
            return
        table = self._tables(deployment)
        if table is None or not table.shadows:
            return
        loop = self._loop
        assert loop is not None  # bound with infer
        live_s = loop.time() - request.started
        for version, sample in table.shadows:
            if sample < 1.0 and self._chance() >= sample:
                continue
            if len(self._tasks) >= self._limit:
                ref = f"{version.model}:{version.version}"
                self._recorder.comparison(deployment, ref).drop()
                continue
            task = loop.create_task(
                self._shadow(deployment, request, result, version.model, version.version, live_s)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _shadow(
        self,
        deployment: str,
        live: InferRequest,
        answer: InferResult,
        model: str,
        version: int,
        live_s: float,
    ) -> None:
        infer, loop = self._infer, self._loop
        assert infer is not None and loop is not None
        ref = f"{model}:{version}"
        request = InferRequest(
            model=model,
            inputs=live.inputs,
            version=version,
            outputs=live.outputs,
            parameters=live.parameters,
            id=live.id,
            request_id=live.request_id,
            timeout=self._timeout,
            caller=live.caller,
            capability=live.capability,
            binary_output=live.binary_output,
            missing=live.missing,
        )
        started = loop.time()
        try:
            shadow = await infer(request)
        except AimassError as exc:
            self._recorder.record(
                deployment, ref, "shadow", loop.time() - started, error=is_server_error(exc)
            )
            return
        except Exception:
            _log.exception("shadow %s of %s failed", ref, deployment)
            self._recorder.record(deployment, ref, "shadow", loop.time() - started, error=True)
            return
        shadow_s = loop.time() - started
        self._recorder.record(deployment, ref, "shadow", shadow_s)
        try:
            self._recorder.comparison(deployment, ref).add(
                answer.outputs,
                shadow.outputs,
                live_s=live_s,
                shadow_s=shadow_s,
                embedding=live.capability is Capability.EMBED,
            )
        except Exception:  # a comparison bug must not take the server's loop down with it
            _log.exception("could not compare shadow %s of %s", ref, deployment)

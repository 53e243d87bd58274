"""The guard loop: every server judges every canary now and then and applies the verdict.

Each round (every ``stats_interval_s``) the loop writes this process's
statistics, so its own latest requests count, then, off the event loop, reads
every deployment, and for each one with a canary reads the statistics rows
of its window from all servers, resolves its targets to the versions rows
name, asks :func:`~aimass.deployments.guard.judge`, and applies a verdict
that changes something through ``Deployments.apply`` (kind ``guard`` for a
trip, ``step``, ``promote``), with the revision it judged: when several
servers reach the same verdict, the first one's change moves the revision
and the others' fail with CONFLICT, which the loop takes as done. The
service records the reason in the deployment's history and the audit log.

Now and then the loop also deletes statistics older than :data:`KEEP_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from aimass.deployments.guard import Verdict, judge
from aimass.deployments.records import Deployment, StatsRow
from aimass.deployments.spec import DeploymentSpec
from aimass.deployments.stats import StatsRecorder
from aimass.errors import AimassError, ErrorCode

__all__ = ["ACTOR", "KEEP_S", "GuardLoop"]

_log = logging.getLogger(__name__)

ACTOR = "guard"
"""Who the history and the audit log say made a guard's change."""

KEEP_S = 7 * 24 * 3600.0
"""How long statistics rows are kept: a week of ``deploy show``."""

_PRUNE_EVERY_S = 600.0

_KINDS = {"trip": "guard", "step": "step", "promote": "promote"}


class Service(Protocol):
    """What the loop needs of :class:`~aimass.deployments.service.Deployments`."""

    def list(self) -> Sequence[Deployment]:
        """Every deployment."""

    def apply(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        by: str,
        kind: str,
        reason: str,
        expect_revision: int | None,
    ) -> Deployment:
        """Change ``name`` to ``spec`` unless its revision moved (CONFLICT)."""


class Stats(Protocol):
    """What the loop needs of :class:`~aimass.deployments.store.DeploymentStore`."""

    @property
    def bucket_s(self) -> int:
        """The time buckets' width in seconds."""

    def write_stats(self, rows: Iterable[StatsRow]) -> None:
        """Insert or replace each row."""

    def read_stats(self, name: str, since: float) -> list[StatsRow]:
        """Every process's rows for ``name`` from the bucket holding ``since`` on."""

    def prune_stats(self, before: float) -> int:
        """Delete rows of buckets that started before ``before``."""


class GuardLoop:
    """Judges and applies every canary's verdict each round (see the module docstring).

    ``resolve`` turns a target reference into the ``model:version`` it
    serves now (raising AimassError when it resolves to nothing).
    """

    def __init__(
        self,
        service: Service,
        store: Stats,
        resolve: Callable[[str], str],
        recorder: StatsRecorder,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._store = store
        self._resolve = resolve
        self._recorder = recorder
        self._interval = interval_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._pruned = 0.0

    def start(self) -> None:
        """Judge every ``interval_s`` from now on, on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._every_round())

    async def stop(self) -> None:
        """Stop judging, after writing this process's last statistics."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._recorder.flush(self._store.write_stats)

    async def round(self) -> list[tuple[str, Verdict]]:
        """One round: write this process's statistics, then judge and apply (in a thread)."""
        await self._recorder.flush(self._store.write_stats)
        return await asyncio.to_thread(self.check)

    def check(self) -> list[tuple[str, Verdict]]:
        """Judge every canary and apply what changes something; the verdicts, by deployment."""
        now = self._clock()
        if now - self._pruned > _PRUNE_EVERY_S:
            self._pruned = now
            self._store.prune_stats(now - KEEP_S)
        verdicts = []
        for deployment in self._service.list():
            canary = deployment.spec.canary
            if canary is None:
                continue
            verdict = self._judge(deployment, now)
            verdicts.append((deployment.name, verdict))
            if verdict.spec is not None:
                self._apply(deployment, verdict)
        return verdicts

    def _judge(self, deployment: Deployment, now: float) -> Verdict:
        spec = deployment.spec
        assert spec.canary is not None
        start = max(spec.canary.since, now - spec.canary.guard.window_s)
        rows = self._store.read_stats(deployment.name, start)
        resolved = {}
        for target in spec.targets:
            try:
                resolved[target.ref] = self._resolve(target.ref)
            except AimassError as exc:  # an alias gone: the controller reports it
                _log.debug("guard of %s: %s", deployment.name, exc.message)
        return judge(spec, rows, resolved=resolved, now=now, bucket_s=self._store.bucket_s)

    def _apply(self, deployment: Deployment, verdict: Verdict) -> None:
        assert verdict.spec is not None
        try:
            self._service.apply(
                deployment.name,
                verdict.spec,
                by=ACTOR,
                kind=_KINDS[verdict.action],
                reason=verdict.reason,
                expect_revision=deployment.revision,
            )
        except AimassError as exc:
            if exc.code is not ErrorCode.CONFLICT and exc.code is not ErrorCode.NOT_FOUND:
                raise
            # Another server acted first (or the deployment went): nothing left to do.
            _log.debug("guard of %s: %s", deployment.name, exc.message)
            return
        _log.warning("deployment %s: %s", deployment.name, verdict.reason)

    async def _every_round(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.round()
            except Exception:
                _log.exception("the canary guard's round failed; trying again")

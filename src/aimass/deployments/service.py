"""Every change of a deployment, in one place: the CLI, the REST API, the SDK and the guard use it.

A change is computed by the spec's pure functions
(:mod:`aimass.deployments.spec`), checked against the registry (each new
reference must name a ready version), then each version it newly brings in
is handed to ``verify`` (the CLI loads it and runs one warm-up call; a server
loads it in its engine) before anything is written. A version that cannot
load or warm is refused and the deployment stays as it was. The write is a
compare-and-set on the revision read, so two changers never overwrite each
other unseen, and every change is recorded in the deployment's history and
in the audit log with who made it.

The audit entry is written here, once for every change whichever surface
made it; the REST routes therefore leave ``Route.management`` off so the
gateway does not record the same change a second time.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aimass.contract.reference import ModelRef, check_model_name
from aimass.deployments.records import Deployment, DeploymentEvent, public_spec
from aimass.deployments.spec import (
    WHOLE,
    DeploymentSpec,
    Guard,
    Progression,
    Sticky,
    Target,
)
from aimass.deployments.store import DeploymentStore
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.audit import AuditLog
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.registry.store import READY

__all__ = ["Deployments", "Verify"]

logger = logging.getLogger("aimass.deployments")

Verify = Callable[[VersionInfo], None]
"""Loads and warms a version, raising if it cannot serve; called before a change is written."""

_REASON_LIMIT = 300


class Deployments:
    """Create, change, roll back, delete and read deployments (see the module docstring).

    ``audit`` defaults to the audit log on the store's database; ``source``
    is where changes come from as the audit log shows it (``cli@host``, a
    server's name); ``clock`` gives seconds since the epoch (a canary's start).
    """

    def __init__(
        self,
        store: DeploymentStore,
        registry: Registry,
        *,
        verify: Verify | None = None,
        audit: AuditLog | None = None,
        source: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.verify = verify
        self.audit = audit if audit is not None else AuditLog(store.engine)
        self.source = source
        self.clock = clock

    # -- reading -------------------------------------------------------------------

    def get(self, name: str) -> Deployment:
        """One deployment; NOT_FOUND if there is none of that name."""
        return self.store.get(name)

    def list(self) -> builtins.list[Deployment]:
        """Every deployment, by name."""
        return self.store.list()

    def history(self, name: str) -> builtins.list[DeploymentEvent]:
        """Every change of ``name``, oldest first, with the moves of the aliases it follows.

        The alias moves (kind ``alias``) are those of aliases any of its specs
        named, from its first creation on. A deleted deployment keeps its
        history; NOT_FOUND only for a name that was never a deployment.
        """
        events = self.store.events(name, limit=None)
        if not events:
            raise AimassError(ErrorCode.NOT_FOUND, f"deployment '{name}' not found")
        followed: set[tuple[str, str]] = set()
        for event in events:
            for side in (event.before, event.after):
                if isinstance(side, DeploymentSpec):
                    followed |= _aliases(side)
        moves = [
            move for model, alias in sorted(followed) for move in self._moves(name, model, alias)
        ]
        start = events[0].at
        merged = [*events, *(m for m in moves if m.at >= start)]
        return sorted(merged, key=lambda event: event.at)

    # -- changing ------------------------------------------------------------------

    def create(self, name: str, ref: str, *, sticky: str | None = None, by: str) -> Deployment:
        """A deployment sending 100% of its traffic to ``ref``, sticky by ``sticky`` if given.

        INVALID_INPUT for a bad name, reference or sticky key; CONFLICT if a
        model has that name; ALREADY_EXISTS if a deployment has.
        """
        check_model_name(name)
        spec = DeploymentSpec(
            targets=(Target(ref=ref, weight=WHOLE),),
            sticky=None if sticky is None else Sticky.parse(sticky),
        ).checked()
        self._refuse_model_name(name)
        self._refuse_taken(name)
        self._admit(None, spec)
        created = self.store.create(name, spec, by=by)
        self._record(by, "create", name, "", None, created)
        return created

    def set(self, name: str, targets: Sequence[Target], *, by: str) -> Deployment:
        """New weights (tenths of a percent, summing to 100%); a swap is one target at 100%."""
        current = self.get(name)
        return self._change(current, current.spec.with_split(targets), by=by, kind="set")

    def canary(
        self,
        name: str,
        ref: str,
        weight: int,
        guard: Guard,
        progression: Progression | None = None,
        *,
        by: str,
    ) -> Deployment:
        """``ref`` on trial at ``weight``, taken from the others in proportion, under ``guard``."""
        current = self.get(name)
        spec = current.spec.with_canary(ref, weight, guard, progression, now=self.clock())
        return self._change(current, spec, by=by, kind="canary")

    def promote(self, name: str, *, by: str) -> Deployment:
        """The canary takes all the traffic; CONFLICT when there is no canary."""
        current = self.get(name)
        return self._change(current, current.spec.promoted(), by=by, kind="promote")

    def rollback(self, name: str, *, by: str) -> Deployment:
        """Back to the state before the newest change not already rolled back.

        Each rollback undoes one more change, so repeated rollbacks walk back
        through the history; the creation itself cannot be undone (CONFLICT:
        delete the deployment instead).
        """
        current = self.get(name)
        undone = _to_undo(self.store.events(name, limit=None))
        if undone is None or not isinstance(undone.before, DeploymentSpec):
            raise AimassError(
                ErrorCode.CONFLICT,
                f"deployment '{name}' has no change left to roll back (it is as created)",
            )
        spec = undone.before
        if spec.canary is not None:
            # The canary's trial starts again now: its old window's requests are not its new ones.
            spec = spec.model_copy(
                update={"canary": spec.canary.model_copy(update={"since": self.clock()})}
            )
        reason = f"undoes change {undone.id} ({undone.kind} by {undone.by})"
        return self._change(current, spec, by=by, kind="rollback", reason=reason, force=True)

    def shadow(self, name: str, ref: str, sample: float, *, by: str) -> Deployment:
        """``ref`` gets a copy of a ``sample`` fraction of live requests (0 < sample <= 1)."""
        current = self.get(name)
        return self._change(current, current.spec.with_shadow(ref, sample), by=by, kind="shadow")

    def shadow_off(self, name: str, ref: str | None = None, *, by: str) -> Deployment:
        """Stop shadowing to ``ref`` (None: to every shadow); NOT_FOUND if ``ref`` is not one."""
        current = self.get(name)
        if ref is not None and ref not in {s.ref for s in current.spec.shadows}:
            raise AimassError(
                ErrorCode.NOT_FOUND, f"{ref} is not a shadow of deployment '{name}'", field="ref"
            )
        return self._change(current, current.spec.without_shadows(ref), by=by, kind="shadow_off")

    def delete(self, name: str, *, by: str) -> None:
        """Remove a deployment; its history stays."""
        before = self.get(name)
        self.store.delete(name, by=by)
        self._record(by, "delete", name, "", before, None)

    def apply(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        by: str,
        kind: str,
        reason: str = "",
        expect_revision: int | None = None,
    ) -> Deployment:
        """Write a spec computed elsewhere (the canary guard's trip, step or promotion).

        CONFLICT when the deployment is no longer at ``expect_revision``
        (another server acted first); the same checks as every change otherwise.
        """
        current = self.get(name)
        if expect_revision is not None and current.revision != expect_revision:
            raise AimassError(
                ErrorCode.CONFLICT,
                f"deployment '{name}' is at revision {current.revision}, not {expect_revision}",
            )
        return self._change(
            current,
            spec.checked(),
            by=by,
            kind=kind,
            reason=reason,
            expect_revision=expect_revision,
        )

    # -- the rules -----------------------------------------------------------------

    def _change(
        self,
        current: Deployment,
        spec: DeploymentSpec,
        *,
        by: str,
        kind: str,
        reason: str = "",
        expect_revision: int | None = None,
        force: bool = False,
    ) -> Deployment:
        """Check, verify, write and record one change; a change that changes nothing is not one."""
        if spec == current.spec and not force:
            return current
        self._admit(current.spec, spec)
        revision = current.revision if expect_revision is None else expect_revision
        changed = self.store.change(
            current.name, spec, by=by, kind=kind, reason=reason, expect_revision=revision
        )
        self._record(by, kind, current.name, reason, current, changed)
        return changed

    def _admit(self, before: DeploymentSpec | None, after: DeploymentSpec) -> None:
        """Resolve the references ``after`` adds and verify the versions they newly bring in."""
        old_refs = set() if before is None else before.refs()
        serving = {info.ref for info in self._resolvable(old_refs)}
        added: dict[str, VersionInfo] = {}
        for ref in sorted(after.refs() - old_refs):
            info = self._ready(ref)
            if info.ref not in serving:
                added.setdefault(info.ref, info)
        for info in added.values():
            self._verify(info)

    def _ready(self, ref: str) -> VersionInfo:
        info = self.registry.resolve(ref)
        if info.status != READY:
            raise AimassError(
                ErrorCode.NOT_FOUND, f"{info.ref} is {info.status}, not ready to serve", field="ref"
            )
        return info

    def _resolvable(self, refs: builtins.set[str]) -> builtins.list[VersionInfo]:
        """The versions ``refs`` name now, leaving out any that no longer resolve."""
        found = []
        for ref in refs:
            try:
                found.append(self.registry.resolve(ref))
            except AimassError:
                continue  # gone from the registry: it cannot be serving what it named
        return found

    def _verify(self, info: VersionInfo) -> None:
        if self.verify is None:
            return
        try:
            self.verify(info)
        except Exception as exc:
            logger.exception("version %s failed to load or warm up", info.ref)
            detail = (
                exc.public_message
                if isinstance(exc, AimassError)
                else f"{type(exc).__name__}: {exc}"
            )
            raise AimassError(
                ErrorCode.CONFLICT,
                f"{info.ref} was refused: it failed to load or warm up "
                f"({detail[:_REASON_LIMIT]}); the deployment is unchanged",
                field="ref",
            ) from exc

    def _refuse_model_name(self, name: str) -> None:
        try:
            self.registry.get_model(name)
        except AimassError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return
            raise
        raise AimassError(
            ErrorCode.CONFLICT,
            f"'{name}' is a model's name; a deployment needs a name of its own "
            "(clients would not know which one they call)",
            field="name",
        )

    def _refuse_taken(self, name: str) -> None:
        # Before verifying, which may load a model: a taken name is refused at once.
        try:
            self.store.get(name)
        except AimassError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return
            raise
        raise AimassError(ErrorCode.ALREADY_EXISTS, f"deployment '{name}' already exists")

    def _moves(self, name: str, model: str, alias: str) -> builtins.list[DeploymentEvent]:
        try:
            moves = self.registry.alias_history(model)
        except AimassError:
            return []  # the model is gone, and its aliases' history with it
        ref = f"{model}@{alias}"
        return [
            DeploymentEvent(
                id=None,
                deployment=name,
                at=_aware(move.at),
                by=move.by,
                kind="alias",
                reason=f"{ref} moved from {move.from_version} to {move.to_version}",
                before={"ref": ref, "version": move.from_version},
                after={"ref": ref, "version": move.to_version},
            )
            for move in moves
            if move.alias == alias
        ]

    def _record(
        self,
        by: str,
        kind: str,
        name: str,
        reason: str,
        before: Deployment | None,
        after: Deployment | None,
    ) -> None:
        """Audit one change; a failing audit write is logged, not the change undone."""
        detail: dict[str, Any] = {
            "reason": reason,
            "revision": None if after is None else after.revision,
            "before": None if before is None else public_spec(before.spec),
            "after": None if after is None else public_spec(after.spec),
        }
        try:
            self.audit.record(
                actor=by,
                action=f"deployments.{kind}",
                target=name,
                source=self.source,
                detail=detail,
            )
        except Exception:
            logger.exception("could not audit the %s of deployment %s", kind, name)


def _to_undo(events: Sequence[DeploymentEvent]) -> DeploymentEvent | None:
    """The newest change no rollback undid yet, since the latest creation (None: none left)."""
    undone = 0
    for event in reversed(events):
        if event.kind in ("create", "delete"):
            return None
        if event.kind == "rollback":
            undone += 1
        elif undone:
            undone -= 1
        else:
            return event
    return None


def _aliases(spec: DeploymentSpec) -> set[tuple[str, str]]:
    found = set()
    for ref in spec.refs():
        parsed = ModelRef.parse(ref)
        if parsed.alias is not None:
            found.add((parsed.name, parsed.alias))
    return found


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)

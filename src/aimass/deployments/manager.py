"""Deployments as people and scripts change them: weights in percent, a guard from its numbers.

The CLI, the REST routes and the SDK take a change the way a person writes it
(``iris:4=10``, ``--max-error-rate 0.02 --window 60s``) and hand it to the one
service that makes every change
(:class:`~aimass.deployments.service.Deployments`). A
:class:`DeploymentManager` is that translation, once, for one actor (``by``,
recorded in the history and the audit log), so the three surfaces cannot
disagree on a default or a rule. :meth:`DeploymentManager.show` adds what the
servers measured (:func:`~aimass.deployments.stats.summarize`) to the spec.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aimass.deployments.records import Deployment
from aimass.deployments.service import Deployments
from aimass.deployments.spec import (
    WHOLE,
    Guard,
    Progression,
    Sticky,
    Target,
    parse_weight,
)
from aimass.deployments.stats import summarize
from aimass.deployments.store import DeploymentStore
from aimass.deployments.verify import in_process
from aimass.errors import AimassError, ErrorCode
from aimass.registry.registry import Registry
from aimass.settings import Settings

__all__ = ["SHOW_WINDOW_S", "DeploymentManager", "parse_duration"]

SHOW_WINDOW_S = 300.0
"""How far back ``show`` counts requests unless told: long enough for a canary's guard window."""

_M = TypeVar("_M", bound=BaseModel)
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, field: str) -> float:
    """``60s``, ``5m``, ``1h``, ``250ms`` or plain seconds (``90``), in seconds; above 0."""
    match = _DURATION.match(text.strip())
    seconds = float(match[1]) * _UNIT[match[2] or "s"] if match else 0.0
    if seconds <= 0:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{field} '{text}' must be a duration above 0 such as 60s, 5m or 1h",
            field=field,
        )
    return seconds


def _percent(value: float | str, *, field: str) -> int:
    """A percentage (``10``, ``12.5``, or its text) in tenths of a percent."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AimassError(ErrorCode.INVALID_INPUT, f"{field} must be a number", field=field)
    try:
        return parse_weight(str(value))
    except AimassError as exc:
        raise AimassError(ErrorCode.INVALID_INPUT, exc.message, field=field) from None


def _built(cls: type[_M], field: str, **values: Any) -> _M:
    """``cls(**values)``, a value out of its range refused with INVALID_INPUT naming it."""
    try:
        return cls(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"]) or field
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"{field} {name}: {error['msg']}", field=name
        ) from None


class DeploymentManager:
    """Every deployment change and question, for one actor; see the module docstring."""

    def __init__(
        self,
        service: Deployments,
        store: DeploymentStore,
        *,
        by: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.store = store
        self.by = by
        self._clock = clock

    @classmethod
    def local(
        cls, registry: Registry, settings: Settings, *, by: str, source: str
    ) -> DeploymentManager:
        """The deployments of ``registry`` outside a server (the CLI, the SDK), acting as ``by``.

        ``source`` is where the audit log says the changes came from (``cli@host``).
        Each version a change adds is loaded here, in an engine of its own,
        and answers one warm-up request before the change is written.
        """
        store = DeploymentStore(registry.database, bucket_s=settings.deployments.stats_bucket_s)
        verify = in_process(registry, settings.serving)
        return cls(Deployments(store, registry, verify=verify, source=source), store, by=by)

    def create(self, name: str, ref: str, *, sticky: str | None = None) -> Deployment:
        """A deployment sending all its traffic to ``ref``, sticky by ``header:NAME`` or ``key``."""
        if sticky is not None:
            Sticky.parse(sticky)  # refused before anything is loaded
        return self.service.create(name, ref, sticky=sticky, by=self.by)

    def set(self, name: str, split: Mapping[str, float | str]) -> Deployment:
        """New weights, in percent by reference (``{"iris:3": 90, "iris:4": 10}``)."""
        targets = [Target(ref=ref, weight=_percent(w, field="weight")) for ref, w in split.items()]
        return self.service.set(name, targets, by=self.by)

    def canary(
        self,
        name: str,
        ref: str,
        weight: float | str,
        *,
        max_error_rate: float | None = None,
        max_p99_ratio: float | None = None,
        window_s: float = 60.0,
        min_requests: int = 50,
        step: float | str | None = None,
        interval_s: float | None = None,
        max_weight: float | str | None = None,
    ) -> Deployment:
        """``ref`` on trial at ``weight`` percent, guarded; with ``step`` it grows by itself.

        A progression needs ``step`` and ``interval_s``; it stops growing at
        ``max_weight`` percent (default 100) and is promoted past it.
        """
        guard = _built(
            Guard,
            "guard",
            max_error_rate=max_error_rate,
            max_p99_ratio=max_p99_ratio,
            window_s=window_s,
            min_requests=min_requests,
        )
        progression = None
        if step is not None or interval_s is not None or max_weight is not None:
            if step is None or interval_s is None:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    "a progressive canary needs both a step and an interval "
                    "(e.g. --step 10 --interval 60s)",
                    field="step" if step is None else "interval_s",
                )
            progression = _built(
                Progression,
                "progression",
                step=_percent(step, field="step"),
                interval_s=interval_s,
                max_weight=WHOLE
                if max_weight is None
                else _percent(max_weight, field="max_weight"),
            )
        tenths = _percent(weight, field="weight")
        return self.service.canary(name, ref, tenths, guard, progression, by=self.by)

    def promote(self, name: str) -> Deployment:
        """The canary takes all the traffic."""
        return self.service.promote(name, by=self.by)

    def rollback(self, name: str) -> Deployment:
        """Back to the state before the newest change not already rolled back."""
        return self.service.rollback(name, by=self.by)

    def shadow(self, name: str, ref: str, sample: float = 1.0) -> Deployment:
        """``ref`` gets a copy of a ``sample`` fraction (0 to 1) of live requests."""
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 < sample <= 1:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"sample must be a fraction above 0 and at most 1, not {sample!r}",
                field="sample",
            )
        return self.service.shadow(name, ref, float(sample), by=self.by)

    def shadow_off(self, name: str, ref: str | None = None) -> Deployment:
        """No more shadows (or no more ``ref`` shadow)."""
        return self.service.shadow_off(name, ref, by=self.by)

    def delete(self, name: str) -> Deployment:
        """Remove the deployment (its history stays); the deployment as it was."""
        found = self.service.get(name)
        self.service.delete(name, by=self.by)
        return found

    def get(self, name: str) -> Deployment:
        """One deployment; NOT_FOUND if there is none."""
        return self.service.get(name)

    def list(self) -> list[Deployment]:
        """Every deployment."""
        return self.service.list()

    def history(self, name: str) -> builtins.list[dict[str, Any]]:
        """Every change, oldest first: its own and the moves of the aliases it follows."""
        return [event.public() for event in self.service.history(name)]

    def show(self, name: str, window_s: float = SHOW_WINDOW_S) -> dict[str, Any]:
        """The deployment and, per version, what every server measured in the last ``window_s``."""
        found = self.service.get(name)
        rows = self.store.read_stats(name, since=self._clock() - window_s)
        return {**found.public(), "window_s": window_s, "stats": summarize(rows)}

"""What the deployment store returns: a deployment, one change of it, one row of request stats.

``public()`` gives the JSON-ready form the CLI's ``--json`` and the REST API
answer with; weights there are percentages (``12.5``), while a spec holds
tenths of a percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aimass.deployments.spec import WHOLE, DeploymentSpec

__all__ = ["Deployment", "DeploymentEvent", "StatsRow", "public_spec"]


def public_spec(spec: DeploymentSpec) -> dict[str, Any]:
    """A spec as JSON-ready data, weights in percent."""
    canary = spec.canary
    return {
        "targets": [{"ref": t.ref, "weight": t.percent} for t in spec.targets],
        "shadows": [{"ref": s.ref, "sample": s.sample} for s in spec.shadows],
        "sticky": None if spec.sticky is None else str(spec.sticky),
        "canary": None
        if canary is None
        else {
            "ref": canary.ref,
            "guard": canary.guard.model_dump(mode="json"),
            "progression": None
            if canary.progression is None
            else {
                "step": canary.progression.step * 100 / WHOLE,
                "interval_s": canary.progression.interval_s,
                "max_weight": canary.progression.max_weight * 100 / WHOLE,
            },
            "since": canary.since,
        },
    }


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment as stored: its spec and who changed it last, at which revision."""

    name: str
    spec: DeploymentSpec
    revision: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str

    def public(self) -> dict[str, Any]:
        """The deployment as JSON-ready data, weights in percent."""
        return {
            "name": self.name,
            **public_spec(self.spec),
            "revision": self.revision,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One entry of a deployment's history.

    ``kind`` is the change (``create``, ``set``, ``canary``, ``promote``,
    ``rollback``, ``shadow``, ``shadow_off``, ``delete``, and the guard's
    ``guard``, ``step`` and ``promote``) or ``alias`` for a move of an alias
    the deployment follows. ``before`` and ``after`` are the specs on either
    side (None before a create and after a delete); for an alias move they are
    ``{"ref": "iris@production", "version": 3}``. ``id`` is None for alias
    moves, which are the registry's records, not the deployment's.
    """

    id: int | None
    deployment: str
    at: datetime
    by: str
    kind: str
    reason: str
    before: DeploymentSpec | dict[str, Any] | None
    after: DeploymentSpec | dict[str, Any] | None

    def public(self) -> dict[str, Any]:
        """The event as JSON-ready data, specs with weights in percent."""
        return {
            "id": self.id,
            "deployment": self.deployment,
            "at": self.at.isoformat(),
            "by": self.by,
            "kind": self.kind,
            "reason": self.reason,
            "before": _public_side(self.before),
            "after": _public_side(self.after),
        }


@dataclass(frozen=True, slots=True)
class StatsRow:
    """One process's counts for one version of a deployment over one time bucket.

    Mirrors :class:`~aimass.deployments.tables.DeploymentStatsRow`: ``role``
    is ``target`` or ``shadow``, ``bucket`` the bucket's start in seconds since
    the epoch, ``latency`` a histogram's counts and ``comparison`` a shadow's
    accumulated comparison with the live answers (both merge by addition).
    """

    deployment: str
    ref: str
    role: str
    process: str
    bucket: int
    requests: int
    errors: int
    latency: list[int]
    comparison: dict[str, Any]


def _public_side(side: DeploymentSpec | dict[str, Any] | None) -> dict[str, Any] | None:
    return public_spec(side) if isinstance(side, DeploymentSpec) else side

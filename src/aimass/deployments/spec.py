"""What a deployment is: weighted targets, shadows, a routing key and a guarded canary.

A :class:`DeploymentSpec` is the desired state of one named endpoint, as the
registry database stores it and every server converges to. Its changes
(``set``, ``canary``, ``promote``, ``shadow``) are pure functions from one
spec to the next, so the CLI, the REST API and the SDK share one set of
rules and the store only records what they produce.

Weights are held in tenths of a percent (:data:`WHOLE` = 100%), so "in 0.1%
steps, summing to 100" is integer arithmetic with no rounding to argue about.
Targets are references (``iris:3``, ``iris@production``) kept as written; a
server resolves them to versions when it converges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aimass.contract.reference import ModelRef, check_model_name
from aimass.errors import AimassError, ErrorCode

__all__ = [
    "WHOLE",
    "Canary",
    "DeploymentSpec",
    "Guard",
    "Progression",
    "Shadow",
    "Sticky",
    "Target",
    "parse_split",
    "parse_weight",
]

WHOLE = 1000
"""100%, in the tenths of a percent weights are counted in."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Target(_Frozen):
    """One reference taking ``weight`` tenths of a percent of the traffic."""

    ref: str
    weight: int = Field(ge=0, le=WHOLE)

    @property
    def percent(self) -> float:
        """The weight in percent, as the CLI and the API show it."""
        return self.weight / 10


class Shadow(_Frozen):
    """A reference that gets a copy of a ``sample`` fraction of live requests."""

    ref: str
    sample: float = Field(default=1.0, gt=0, le=1)


class Sticky(_Frozen):
    """What keeps a caller on one version: a request header's value, or the API key."""

    kind: Literal["header", "key"]
    header: str | None = None

    @classmethod
    def parse(cls, text: str) -> Sticky:
        """``header:NAME`` or ``key``; INVALID_INPUT otherwise."""
        if text == "key":
            return cls(kind="key")
        kind, _, header = text.partition(":")
        if kind == "header" and header.strip():
            return cls(kind="header", header=header.strip().lower())
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"sticky '{text}' must be 'header:NAME' (e.g. header:x-user-id) or 'key'",
            field="sticky",
        )

    def __str__(self) -> str:
        return "key" if self.kind == "key" else f"header:{self.header}"


class Guard(_Frozen):
    """When a canary is taken out: too many errors or too slow against the stable versions."""

    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    max_p99_ratio: float | None = Field(default=None, gt=0)
    window_s: float = Field(default=60.0, gt=0)
    min_requests: int = Field(default=50, ge=1)


class Progression(_Frozen):
    """A canary's weight grows by ``step`` every ``interval_s`` it passes, up to ``max_weight``.

    Weights in tenths of a percent, as everywhere in a spec.
    """

    step: int = Field(gt=0, le=WHOLE)
    interval_s: float = Field(gt=0)
    max_weight: int = Field(gt=0, le=WHOLE)


class Canary(_Frozen):
    """The target under trial, its guard, and how it grows (None: it stays at its weight).

    ``since`` is when its weight last changed (seconds since the epoch): a
    progression steps ``interval_s`` after it, and the guard judges only
    requests from then on.
    """

    ref: str
    guard: Guard = Field(default_factory=Guard)
    progression: Progression | None = None
    since: float = 0.0


class DeploymentSpec(_Frozen):
    """The desired state of one deployment (see the module docstring)."""

    targets: tuple[Target, ...]
    shadows: tuple[Shadow, ...] = ()
    sticky: Sticky | None = None
    canary: Canary | None = None

    def checked(self) -> DeploymentSpec:
        """The spec itself when it is valid; INVALID_INPUT naming the rule it breaks otherwise."""
        refs = [target.ref for target in self.targets]
        for ref in [*refs, *(shadow.ref for shadow in self.shadows)]:
            _check_ref(ref)
        if not self.targets:
            raise _invalid("a deployment needs at least one target")
        if len(set(refs)) != len(refs):
            raise _invalid("each target may appear once")
        total = sum(target.weight for target in self.targets)
        if total != WHOLE:
            raise _invalid(f"the weights must sum to 100, not {total / 10:g}")
        if any(shadow.ref in refs for shadow in self.shadows):
            raise _invalid("a shadow must not also be a target")
        if len({shadow.ref for shadow in self.shadows}) != len(self.shadows):
            raise _invalid("each shadow may appear once")
        if self.canary is not None and self.canary.ref not in refs:
            raise _invalid(f"the canary {self.canary.ref} is not a target")
        return self

    def weight_of(self, ref: str) -> int:
        """The weight ``ref`` has (0 when it is not a target)."""
        return next((t.weight for t in self.targets if t.ref == ref), 0)

    # -- the changes ---------------------------------------------------------------

    def with_split(self, targets: Sequence[Target]) -> DeploymentSpec:
        """New weights for the targets; a canary not among those weighted above 0 ends."""
        canary = self.canary
        if canary is not None and not any(t.ref == canary.ref and t.weight for t in targets):
            canary = None
        return self.model_copy(update={"targets": tuple(targets), "canary": canary}).checked()

    def with_canary(
        self,
        ref: str,
        weight: int,
        guard: Guard,
        progression: Progression | None = None,
        *,
        now: float,
    ) -> DeploymentSpec:
        """``ref`` takes ``weight`` from the other targets, in proportion to theirs, on trial."""
        if not 0 < weight < WHOLE:
            raise _invalid("a canary's weight must be above 0 and below 100", field="weight")
        others = [t for t in self.targets if t.ref != ref and t.weight]
        if not others:
            raise _invalid(f"{ref} would be the only target: a canary needs a stable one")
        targets = [*_scaled(others, WHOLE - weight), Target(ref=ref, weight=weight)]
        canary = Canary(ref=ref, guard=guard, progression=progression, since=now)
        return self.model_copy(update={"targets": tuple(targets), "canary": canary}).checked()

    def stepped(self, *, now: float) -> DeploymentSpec:
        """The canary one progression step further (promoted past its ``max_weight``)."""
        canary = self.canary
        if canary is None or canary.progression is None:
            raise _invalid("this deployment has no progressive canary")
        weight = self.weight_of(canary.ref)
        if weight >= canary.progression.max_weight:
            return self.promoted()
        grown = min(weight + canary.progression.step, canary.progression.max_weight)
        others = [t for t in self.targets if t.ref != canary.ref and t.weight]
        targets = [*_scaled(others, WHOLE - grown), Target(ref=canary.ref, weight=grown)]
        update = {"targets": tuple(targets), "canary": canary.model_copy(update={"since": now})}
        return self.model_copy(update=update).checked()

    def promoted(self) -> DeploymentSpec:
        """The canary takes all the traffic and is a canary no more."""
        if self.canary is None:
            raise AimassError(ErrorCode.CONFLICT, "this deployment has no canary to promote")
        target = Target(ref=self.canary.ref, weight=WHOLE)
        return self.model_copy(update={"targets": (target,), "canary": None}).checked()

    def tripped(self) -> DeploymentSpec:
        """The canary's weight goes back to the stable targets; the canary ends."""
        canary = self.canary
        if canary is None:
            raise AimassError(ErrorCode.CONFLICT, "this deployment has no canary")
        others = [t for t in self.targets if t.ref != canary.ref and t.weight]
        return self.model_copy(
            update={"targets": tuple(_scaled(others, WHOLE)), "canary": None}
        ).checked()

    def with_shadow(self, ref: str, sample: float) -> DeploymentSpec:
        """``ref`` shadows the live targets on a ``sample`` of requests (replacing its sample)."""
        shadows = [s for s in self.shadows if s.ref != ref]
        shadows.append(Shadow(ref=ref, sample=sample))
        return self.model_copy(update={"shadows": tuple(shadows)}).checked()

    def without_shadows(self, ref: str | None = None) -> DeploymentSpec:
        """No shadow (``ref`` None), or every shadow but ``ref``."""
        shadows = () if ref is None else tuple(s for s in self.shadows if s.ref != ref)
        return self.model_copy(update={"shadows": shadows}).checked()

    def refs(self) -> set[str]:
        """Every reference the deployment names, targets and shadows."""
        return {t.ref for t in self.targets} | {s.ref for s in self.shadows}


def parse_weight(text: str) -> int:
    """A percentage such as ``10`` or ``12.5``, in tenths of a percent; INVALID_INPUT otherwise."""
    try:
        percent = float(text)
    except ValueError:
        percent = math.nan
    # Checked after scaling: a finite 1e308 is infinite in tenths.
    tenths = round(percent * 10) if math.isfinite(percent * 10) else -1
    if not 0 <= tenths <= WHOLE or abs(percent * 10 - tenths) > 1e-6:
        raise _invalid(f"weight '{text}' must be a percentage from 0 to 100 in 0.1 steps")
    return tenths


def parse_split(pairs: Iterable[str]) -> tuple[Target, ...]:
    """``REF=WEIGHT`` pairs (``iris:3=90 iris:4=10``) as targets; INVALID_INPUT if malformed."""
    targets = []
    for pair in pairs:
        ref, sep, weight = pair.rpartition("=")
        if not sep or not ref:
            raise _invalid(f"'{pair}' must be REF=WEIGHT, e.g. iris:4=10")
        _check_ref(ref)
        targets.append(Target(ref=ref, weight=parse_weight(weight)))
    return tuple(targets)


def _check_ref(ref: str) -> None:
    parsed = ModelRef.parse(ref)
    check_model_name(parsed.name)
    if parsed.version is None and parsed.alias is None:
        raise _invalid(
            f"'{ref}' must name a version (NAME:VERSION) or an alias (NAME@ALIAS), "
            "so that what a deployment serves changes only when it is told to"
        )


def _scaled(targets: Sequence[Target], total: int) -> list[Target]:
    """``targets`` keeping their proportions but summing to ``total`` (largest remainder)."""
    have = sum(t.weight for t in targets)
    exact = [t.weight * total / have for t in targets]
    weights = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(targets)), key=lambda i: exact[i] - weights[i], reverse=True)
    for i in by_remainder[: total - sum(weights)]:
        weights[i] += 1
    return [Target(ref=t.ref, weight=w) for t, w in zip(targets, weights, strict=True)]


def _invalid(message: str, *, field: str = "targets") -> AimassError:
    return AimassError(ErrorCode.INVALID_INPUT, message, field=field)

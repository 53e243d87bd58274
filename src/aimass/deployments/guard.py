"""The canary's judge: trip, step, promote or wait, from the statistics of a window.

:func:`judge` is pure: given a deployment's spec, the statistics rows every
server wrote (:mod:`~aimass.deployments.stats`), which version each of the
spec's references resolves to, and the time, it says what should happen to
the canary and, unless nothing should, the spec that does it. The guard
judges only requests from the window: the last ``window_s`` seconds, and
none from before the canary's weight last changed (``canary.since``); a time
bucket that overlaps the window counts whole.

* **trip**: once the canary has ``min_requests`` in the window, its error
  rate is above ``max_error_rate``, or its p99 latency over the p99 of the
  stable targets (merged) is above ``max_p99_ratio``; its weight goes back
  to the stable targets (:meth:`~aimass.deployments.spec.DeploymentSpec.tripped`).
* **step** / **promote**: a progressive canary whose ``interval_s`` has
  passed since ``since`` with the guard holding on at least ``min_requests``
  (a canary nobody called has proved nothing, so it does not grow) takes its
  next step, or all the traffic once it has reached ``max_weight``.
* **wait**: anything else.

:class:`~aimass.deployments.guarding.GuardLoop` applies the verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from aimass.deployments.histogram import LOW, quantile
from aimass.deployments.records import StatsRow
from aimass.deployments.spec import DeploymentSpec
from aimass.deployments.stats import Totals

__all__ = ["Action", "Verdict", "judge"]

Action = Literal["trip", "step", "promote", "wait"]


@dataclass(frozen=True)
class Verdict:
    """What to do with a canary, why, and the spec that does it (None: wait)."""

    action: Action
    reason: str
    spec: DeploymentSpec | None = None


def judge(
    spec: DeploymentSpec,
    rows: Iterable[StatsRow],
    *,
    resolved: Mapping[str, str],
    now: float,
    bucket_s: int,
) -> Verdict:
    """The verdict on ``spec``'s canary (see the module docstring).

    ``resolved`` maps each of the spec's target references to the
    ``model:version`` it serves, as statistics rows name versions.
    """
    canary = spec.canary
    if canary is None:
        return Verdict("wait", "no canary")
    guard = canary.guard
    start = max(canary.since, now - guard.window_s)
    ours = resolved.get(canary.ref)
    stable = {
        resolved[t.ref]
        for t in spec.targets
        if t.ref != canary.ref and t.weight and t.ref in resolved
    } - {ours}
    tried, held = Totals(), Totals()
    for row in rows:
        if row.role != "target" or row.bucket + bucket_s <= start:
            continue
        if row.ref == ours:
            tried.add(row)
        elif row.ref in stable:
            held.add(row)
    name = canary.ref if ours is None or ours == canary.ref else f"{canary.ref} ({ours})"
    if tried.requests < guard.min_requests:
        return Verdict("wait", f"{name} has {tried.requests} of {guard.min_requests} requests")
    window = f"{tried.requests} requests in the last {min(now - start, guard.window_s):.0f}s"
    if guard.max_error_rate is not None and tried.error_rate > guard.max_error_rate:
        reason = (
            f"guard tripped: canary {name} failed {tried.errors} of {window} "
            f"({tried.error_rate:.1%}), above the {guard.max_error_rate:.1%} limit"
        )
        return Verdict("trip", reason, spec.tripped())
    if guard.max_p99_ratio is not None and held.requests:
        p99 = quantile(tried.latency, 0.99)
        base = max(quantile(held.latency, 0.99), LOW)
        if p99 / base > guard.max_p99_ratio:
            reason = (
                f"guard tripped: canary {name} p99 {p99 * 1000:.1f} ms over {window} is "
                f"{p99 / base:.2f}x the stable p99 {base * 1000:.1f} ms, above the "
                f"{guard.max_p99_ratio:g}x limit"
            )
            return Verdict("trip", reason, spec.tripped())
    progression = canary.progression
    if progression is None or now - canary.since < progression.interval_s:
        return Verdict("wait", f"{name} holds on {window}")
    weight = spec.weight_of(canary.ref)
    if weight >= progression.max_weight:
        return Verdict(
            "promote", f"canary {name} passed every step to {weight / 10:g}%", spec.promoted()
        )
    stepped = spec.stepped(now=now)
    return Verdict(
        "step",
        f"canary {name} held on {window}: {weight / 10:g}% -> "
        f"{stepped.weight_of(canary.ref) / 10:g}%",
        stepped,
    )

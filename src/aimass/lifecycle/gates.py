"""Promotion gates: move an alias only when the version's recorded evaluation is good enough.

A requirement is ``METRIC OP NUMBER`` (``f1_macro>=0.95``, ``rmse<0.5``).
The recorded evaluation of a version is its newest successful evaluation
run (``aimass evaluate``) when there is one, else the held-out evaluation
written into the version when it was trained. A version with no recorded
evaluation, or without the metric a requirement names, is refused too: a
gate that cannot be checked is not passed.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aimass.contract.reference import check_alias
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.runs import SUCCEEDED, RunStore
from aimass.registry import Registry, VersionInfo

__all__ = ["RecordedEvaluation", "Requirement", "promote", "recorded_evaluation"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One gate: a metric, a comparison and a threshold."""

    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """``f1_macro>=0.95`` -> Requirement; INVALID_INPUT explains a malformed one."""
        match = _REQUIREMENT.match(text)
        if match is None:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"requirement '{text}' must look like METRIC>=NUMBER "
                f"(operators: {', '.join(_OPERATORS)})",
            )
        metric, op, number = match.groups()
        try:
            threshold = float(number)
        except ValueError:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"requirement '{text}': '{number}' is not a number"
            ) from None
        return cls(metric, op, threshold)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"

    def check(self, metrics: dict[str, Any]) -> str | None:
        """None if ``metrics`` meet this requirement, else the reason they do not."""
        if self.metric not in metrics:
            return f"{self.metric} was not recorded (recorded: {', '.join(sorted(metrics))})"
        value = float(metrics[self.metric])
        if _OPERATORS[self.op](value, self.threshold):
            return None
        return f"{self.metric} is {value:.4g}, required {self.op}{self.threshold:g}"


@dataclass(frozen=True)
class RecordedEvaluation:
    """A version's metrics and where they were recorded."""

    metrics: dict[str, Any]
    source: str


def recorded_evaluation(
    registry: Registry, runs: RunStore, info: VersionInfo
) -> RecordedEvaluation | None:
    """The newest evaluation recorded for a version, if any."""
    evaluations = runs.list(
        model=info.model, kind="evaluate", version=info.version, status=SUCCEEDED, limit=1
    )
    if evaluations:
        run = evaluations[0]
        return RecordedEvaluation(run.metrics, f"evaluation run {run.id}")
    training = info.metadata.get("training")
    if isinstance(training, dict) and training.get("metrics"):
        source = f"held-out split of training run {training.get('run_id')}"
        return RecordedEvaluation(dict(training["metrics"]), source)
    return None


def promote(
    registry: Registry,
    runs: RunStore,
    name: str,
    alias: str,
    version: int,
    requirements: Sequence[Requirement],
) -> int | None:
    """Point ``alias`` at ``version`` if every requirement holds; CONFLICT says why not.

    Returns where the alias pointed before. A bad alias name is refused
    before any gate is checked.
    """
    check_alias(alias)
    info = registry.get_version(name, version)
    if requirements:
        recorded = recorded_evaluation(registry, runs, info)
        if recorded is None:
            raise AimassError(
                ErrorCode.CONFLICT,
                f"refused: {info.ref} has no recorded evaluation to check "
                f"{', '.join(map(str, requirements))} against; run aimass evaluate first",
            )
        failures = [reason for r in requirements if (reason := r.check(recorded.metrics))]
        if failures:
            raise AimassError(
                ErrorCode.CONFLICT,
                f"refused to point {name}@{alias} at {info.ref}: {'; '.join(failures)} "
                f"(from the {recorded.source})",
                failures=failures,
            )
    return registry.set_alias(name, alias, version)

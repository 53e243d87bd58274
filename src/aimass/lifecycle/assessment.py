"""Evaluating a registered version on a data set, recorded as an evaluation run.

This is what ``aimass evaluate MODEL:VERSION data.csv`` does: read the file,
take the target column (by default the one the version was trained on),
predict through the version's runtime exactly as serving does, score it, and
record the metrics, the data fingerprint and the full evaluation as a run of
kind ``evaluate`` tied to that version, where promotion gates and model
cards find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.data import check_columns, fingerprint, read_table, split_target
from aimass.lifecycle.evaluate import Evaluation, evaluate_version
from aimass.lifecycle.runs import RunRecord, RunStore
from aimass.registry import Registry

__all__ = ["Assessment", "assess"]


@dataclass(frozen=True)
class Assessment:
    """An evaluation of a version and the run that records it."""

    run: RunRecord
    evaluation: Evaluation


def assess(
    registry: Registry,
    runs: RunStore,
    ref: str,
    data: Path,
    *,
    target: str | None = None,
    metrics: Sequence[str] | None = None,
) -> Assessment:
    """Evaluate the version ``ref`` names on the file ``data`` and record the run."""
    info = registry.resolve(ref)
    training = info.metadata.get("training") or {}
    target = target or training.get("target")
    if target is None:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{info.ref} was not trained by aimass, so its target column is unknown: pass --target",
        )
    dataset = split_target(read_table(data), target, None, str(data))
    columns = info.manifest.options.get("columns")
    if columns is not None:
        check_columns(dataset.features.columns, columns, str(data))
        dataset = split_target(
            dataset.features.assign(**{target: dataset.target}), target, columns, str(data)
        )
    stamp = fingerprint(dataset)
    run = runs.start(
        "evaluate",
        info.model,
        version=info.version,
        params={"target": target},
        data=stamp.model_dump(),
        created_by=registry.user,
    )
    try:
        model = registry.load(info.model, info.version)
        classes = training.get("classes") or None
        evaluation = evaluate_version(
            model, dataset.features, dataset.target, classes=classes, metrics=metrics
        )
    except BaseException as exc:
        reason = exc.message if isinstance(exc, AimassError) else f"{type(exc).__name__}: {exc}"
        runs.fail(run.id, reason)
        raise
    finished = runs.finish(
        run.id,
        metrics=evaluation.metrics,
        version=info.version,
        extra={"evaluation": evaluation.model_dump(mode="json")},
    )
    return Assessment(run=finished, evaluation=evaluation)

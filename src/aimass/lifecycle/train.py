"""Training runs: a spec in, one registered version (preprocessing and model together) out.

:class:`Trainer` reads the data, fingerprints it, builds the Pipeline,
holds out a test split, cross-validates on the rest (when the spec asks),
fits, evaluates on the held-out rows, and registers the fitted Pipeline with
its evaluation, cross-validation spread, data fingerprint and the spec in the
version's metadata. The run is tracked from the first step: its row says
what it is doing and how far along it is, and ends ``succeeded`` with the
version it produced, or ``failed`` with the reason.

The registered Pipeline is the one fitted on the training part, so the
recorded held-out metrics describe exactly the model that is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimass.contract.manifest import Lineage, LineageMethod
from aimass.contract.signature import Task
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.data import DataFingerprint, Dataset, fingerprint, load_dataset
from aimass.lifecycle.evaluate import (
    CrossValidation,
    Evaluation,
    check_metrics,
    cross_validate,
    evaluate_estimator,
)
from aimass.lifecycle.pipeline import build_pipeline, extras_of, fit, task_of
from aimass.lifecycle.runs import Progress, RunRecord, TrackedJob
from aimass.lifecycle.spec import TrainSpec
from aimass.registry import Registry, VersionInfo
from aimass.runtimes.loading import require

__all__ = [
    "TrainResult",
    "Trainer",
    "holdout_split",
    "sample_rows",
    "train_and_register",
]


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run: RunRecord
    version: VersionInfo
    pipeline: Any
    evaluation: Evaluation
    cross_validation: CrossValidation | None
    data: DataFingerprint
    test_features: Any
    test_target: Any


def holdout_split(spec: TrainSpec, data: Dataset, task: Task) -> tuple[Any, Any, Any, Any]:
    """(train features, test features, train target, test target), seeded by the spec."""
    from sklearn.model_selection import train_test_split

    stratify = data.target if task is Task.CLASSIFICATION and spec.split.stratify else None
    try:
        parts: list[Any] = train_test_split(
            data.features,
            data.target,
            test_size=spec.split.test_size,
            stratify=stratify,
            random_state=spec.seed,
        )
    except ValueError as exc:  # too few rows of a class to stratify, say
        raise AimassError(ErrorCode.INVALID_INPUT, f"cannot split the data: {exc}") from None
    return parts[0], parts[1], parts[2], parts[3]


def sample_rows(features: Any, rows: int = 5) -> Any:
    """A few rows to infer the signature from: complete ones, and one per column with gaps.

    A column with missing values in the training data contributes a row where
    it is missing, so the signature says that input may be missing (its
    ``nullable``) and the server accepts ``null`` for it, handing the model the
    NaN the training frame held.
    """
    pd = require("pandas", "sklearn")
    complete = features.dropna()
    sample = (complete if len(complete) else features).head(rows)
    gaps = [
        features[features[column].isna()].head(1)
        for column in features.columns
        if features[column].isna().any()
    ]
    return pd.concat([sample, *gaps]) if gaps else sample.copy()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return repr(value)


class Trainer(TrackedJob):
    """Runs training specs against a registry, tracking each run."""

    def train(
        self,
        spec: TrainSpec,
        *,
        params: Mapping[str, Any] | None = None,
        lineage: Lineage | None = None,
        metadata: Mapping[str, Any] | None = None,
        run: RunRecord | None = None,
        run_extra: Mapping[str, Any] | None = None,
        window: tuple[float, float] = (0.0, 1.0),
    ) -> TrainResult:
        """Train, evaluate and register ``spec``'s model; ``params`` override pipeline params.

        A caller that already started a run (tuning) passes it with the share of
        its progress bar (``window``) this training fills.
        """
        data = load_dataset(spec.data)
        stamp = fingerprint(data)
        pipeline = build_pipeline(spec, data.features)
        if params:
            try:
                pipeline.set_params(**params)
            except ValueError as exc:
                raise AimassError(ErrorCode.INVALID_INPUT, f"pipeline parameter: {exc}") from None
        task = task_of(pipeline)
        metrics = check_metrics(task, spec.metrics)
        flat_params = _jsonable(
            {
                "estimator": spec.estimator.name,
                **{f"model__{k}": v for k, v in spec.estimator.params.items()},
                **(params or {}),
            }
        )
        if run is None:
            run = self.runs.start(
                "train",
                spec.name,
                params=flat_params,
                data=stamp.model_dump(),
                created_by=self.registry.user,
            )
        else:
            self.runs.update(run.id, data=stamp.model_dump())
        try:
            return self._train(
                spec,
                data,
                stamp,
                pipeline,
                task,
                metrics,
                run,
                flat_params,
                lineage,
                metadata,
                run_extra,
                window,
            )
        except BaseException as exc:
            reason = exc.message if isinstance(exc, AimassError) else f"{type(exc).__name__}: {exc}"
            self.runs.fail(run.id, reason)
            raise

    def _train(
        self,
        spec: TrainSpec,
        data: Dataset,
        stamp: DataFingerprint,
        pipeline: Any,
        task: Task,
        metrics: tuple[str, ...],
        run: RunRecord,
        flat_params: Any,
        lineage: Lineage | None,
        metadata: Mapping[str, Any] | None,
        run_extra: Mapping[str, Any] | None,
        window: tuple[float, float],
    ) -> TrainResult:
        from sklearn.base import clone

        low, high = window
        folds = spec.cv.folds if spec.cv is not None else 0
        total = folds + 3
        done = 0

        def step(message: str) -> None:
            nonlocal done
            done += 1
            self.report(run.id, message, low + (high - low) * done / total)

        x_train, x_test, y_train, y_test = holdout_split(spec, data, task)
        cv = None
        if spec.cv is not None:
            cv = cross_validate(
                lambda: clone(pipeline),
                x_train,
                y_train,
                task,
                spec.cv,
                seed=spec.seed,
                metrics=metrics,
                progress=step,
            )
        self.report(run.id, "fitting", low + (high - low) * done / total)
        fit(pipeline, x_train, y_train)
        step("evaluating on the held-out split")
        evaluation = evaluate_estimator(pipeline, x_test, y_test, task, metrics)
        step("registering")
        classes = list(evaluation.labels) if task is Task.CLASSIFICATION else []
        version_metadata = {
            "training": {
                "run_id": run.id,
                "target": data.target_name,
                "classes": classes,
                "data": stamp.model_dump(),
                "split": {"test_size": spec.split.test_size, "seed": spec.seed},
                "params": flat_params,
                "metrics": evaluation.metrics,
                "evaluation": evaluation.model_dump(mode="json"),
                "cross_validation": cv.model_dump(mode="json") if cv else None,
                "extras": extras_of(spec.estimator),
                "spec": spec.model_dump(mode="json"),
            },
            "card": spec.card.model_dump(mode="json"),
            **(metadata or {}),
        }
        version = self.registry.register(
            pipeline,
            spec.name,
            sample_input=sample_rows(x_train),
            task=task,
            description=spec.description,
            tags=spec.tags,
            metadata=version_metadata,
            lineage=lineage
            or Lineage(
                method=LineageMethod.TRAINED,
                params={"run": run.id, "data_sha256": stamp.sha256},
            ),
        )
        finished = self.runs.finish(
            run.id,
            metrics=evaluation.metrics,
            version=version.version,
            extra={
                "cross_validation": cv.model_dump(mode="json") if cv else None,
                **(run_extra or {}),
            },
        )
        step("done")
        return TrainResult(
            run=finished,
            version=version,
            pipeline=pipeline,
            evaluation=evaluation,
            cross_validation=cv,
            data=stamp,
            test_features=x_test,
            test_target=y_test,
        )


def train_and_register(
    spec: TrainSpec | Path | str | Mapping[str, Any],
    *,
    registry: Registry | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train a spec (a ``TrainSpec``, a YAML path, or a mapping) on a registry.

    The registry defaults to the one the environment describes, as for
    ``aimass.register``; the run is tracked in its database.
    """
    from aimass.lifecycle.runs import RunStore
    from aimass.lifecycle.spec import load_spec, parse_spec

    if isinstance(spec, Path | str):
        parsed = load_spec(Path(spec))
    elif isinstance(spec, TrainSpec):
        parsed = spec
    else:
        parsed = parse_spec(dict(spec))
    if registry is None:
        from aimass.sdk import default_registry

        registry = default_registry()
    return Trainer(registry, RunStore.of(registry), progress=progress).train(parsed)

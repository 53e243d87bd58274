"""Evaluation: metrics on a held-out set, k-fold cross-validation, and registered versions.

Every number comes from scikit-learn's own metric functions; this module
only decides which ones apply to a task and collects them with what a model
card plots (the confusion matrix, one-vs-rest ROC curves). Cross-validation
refits a fresh clone per fold and reports each metric's mean and spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aimass.contract.runtime import Arrays
from aimass.contract.signature import Task
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.pipeline import fit
from aimass.lifecycle.spec import CVSpec
from aimass.runtimes.model import LoadedModel

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "CrossValidation",
    "Evaluation",
    "MetricSpread",
    "cross_validate",
    "default_metrics",
    "evaluate_estimator",
    "evaluate_predictions",
    "evaluate_version",
    "frame_inputs",
    "higher_is_better",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "cohen_kappa",
    "roc_auc_ovr",
    "log_loss",
)
REGRESSION_METRICS = ("mae", "rmse", "r2")
_LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
_ROC_POINTS = 200

ProgressSink = Callable[[str], None]
"""Told a short message each time a unit of work (a fold) is done."""


class Evaluation(BaseModel):
    """Metrics of one model on one data set, with what a model card plots."""

    model_config = ConfigDict(frozen=True)

    task: Task
    rows: int
    metrics: dict[str, float]
    labels: list[Any] = Field(default_factory=list, description="Class labels, in matrix order")
    confusion_matrix: list[list[int]] | None = None
    roc: dict[str, dict[str, list[float]]] | None = Field(
        default=None, description="Per class (one-vs-rest): fpr and tpr, at most 200 points"
    )
    skipped: dict[str, str] = Field(
        default_factory=dict, description="Metrics that could not be computed, and why"
    )


class MetricSpread(BaseModel):
    """One metric across cross-validation folds."""

    model_config = ConfigDict(frozen=True)

    mean: float
    std: float
    folds: list[float]


class CrossValidation(BaseModel):
    """A cross-validation's scheme and every metric's mean and spread."""

    model_config = ConfigDict(frozen=True)

    scheme: str
    folds: int
    metrics: dict[str, MetricSpread]


def default_metrics(task: Task) -> tuple[str, ...]:
    """Every metric this module computes for ``task``."""
    if task is Task.CLASSIFICATION:
        return CLASSIFICATION_METRICS
    if task is Task.REGRESSION:
        return REGRESSION_METRICS
    raise AimassError(ErrorCode.UNSUPPORTED, f"no metrics for a {task.value} model")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better one."""
    return metric not in _LOWER_IS_BETTER


def check_metrics(task: Task, metrics: Sequence[str] | None) -> tuple[str, ...]:
    """``metrics`` (or all of the task's), refusing names the task has not."""
    known = default_metrics(task)
    if metrics is None:
        return known
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"unknown {task.value} metric(s) {unknown}; known: {', '.join(known)}",
        )
    return tuple(metrics)


def _classification(
    y_true: Any, y_pred: Any, proba: Any, classes: list[Any], wanted: Sequence[str]
) -> tuple[dict[str, float], dict[str, str]]:
    from sklearn import metrics as m

    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    simple: dict[str, Callable[[], float]] = {
        "accuracy": lambda: m.accuracy_score(y_true, y_pred),
        "precision_macro": lambda: m.precision_score(
            y_true, y_pred, average="macro", zero_division=0
        ),
        "recall_macro": lambda: m.recall_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_macro": lambda: m.f1_score(y_true, y_pred, average="macro", zero_division=0),
        "precision_weighted": lambda: m.precision_score(
            y_true, y_pred, average="weighted", zero_division=0
        ),
        "recall_weighted": lambda: m.recall_score(
            y_true, y_pred, average="weighted", zero_division=0
        ),
        "f1_weighted": lambda: m.f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "cohen_kappa": lambda: m.cohen_kappa_score(y_true, y_pred),
        "roc_auc_ovr": lambda: _roc_auc(y_true, proba, classes),
        "log_loss": lambda: m.log_loss(y_true, proba, labels=classes),
    }
    for name in wanted:
        if name in ("roc_auc_ovr", "log_loss") and proba is None:
            skipped[name] = "the model has no predict_proba"
            continue
        try:
            values[name] = float(simple[name]())
        except ValueError as exc:  # e.g. one class only in y_true
            skipped[name] = str(exc)
    return values, skipped


def _roc_auc(y_true: Any, proba: Any, classes: list[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    if len(classes) == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))


def _regression(y_true: Any, y_pred: Any, wanted: Sequence[str]) -> dict[str, float]:
    from sklearn import metrics as m

    compute: dict[str, Callable[[], float]] = {
        "mae": lambda: m.mean_absolute_error(y_true, y_pred),
        "rmse": lambda: m.root_mean_squared_error(y_true, y_pred),
        "r2": lambda: m.r2_score(y_true, y_pred),
    }
    return {name: float(compute[name]()) for name in wanted}


def _roc_curves(y_true: Any, proba: Any, classes: list[Any]) -> dict[str, dict[str, list[float]]]:
    from sklearn.metrics import roc_curve

    curves: dict[str, dict[str, list[float]]] = {}
    positives = classes[1:] if len(classes) == 2 else classes
    for label in positives:
        column = classes.index(label)
        truth = np.asarray(y_true) == label
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, proba[:, column])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _ROC_POINTS)).astype(int))
        curves[str(label)] = {
            "fpr": [float(v) for v in fpr[keep]],
            "tpr": [float(v) for v in tpr[keep]],
        }
    return curves


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def evaluate_predictions(
    task: Task,
    y_true: Any,
    y_pred: Any,
    *,
    proba: Any = None,
    classes: Sequence[Any] | None = None,
    metrics: Sequence[str] | None = None,
) -> Evaluation:
    """Metrics of predictions against the truth; ``classes`` orders ``proba``'s columns."""
    wanted = check_metrics(task, metrics)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if len(y_true) != len(y_pred):
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"{len(y_pred)} predictions for {len(y_true)} rows"
        )
    if task is Task.REGRESSION:
        return Evaluation(task=task, rows=len(y_true), metrics=_regression(y_true, y_pred, wanted))
    from sklearn.metrics import confusion_matrix

    labels = [_plain(c) for c in (classes if classes is not None else np.unique(y_true))]
    values, skipped = _classification(y_true, y_pred, proba, labels, wanted)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return Evaluation(
        task=task,
        rows=len(y_true),
        metrics=values,
        labels=labels,
        confusion_matrix=[[int(v) for v in row] for row in matrix],
        roc=_roc_curves(y_true, proba, labels) if proba is not None else None,
        skipped=skipped,
    )


def evaluate_estimator(
    estimator: Any, features: Any, target: Any, task: Task, metrics: Sequence[str] | None = None
) -> Evaluation:
    """Evaluate a fitted scikit-learn-compatible estimator on a data set."""
    proba = estimator.predict_proba(features) if hasattr(estimator, "predict_proba") else None
    classes = list(estimator.classes_) if hasattr(estimator, "classes_") else None
    return evaluate_predictions(
        task,
        target,
        estimator.predict(features),
        proba=proba,
        classes=classes,
        metrics=metrics,
    )


def frame_inputs(model: LoadedModel, frame: Any) -> Arrays:
    """A data frame as a version's named inputs: by column when it records them, else a matrix.

    Evaluation and batch scoring both feed a version this way, so what they
    score is what the version answers when served. Missing cells reach the
    model as pandas read them (NaN), which is what a served request's
    ``null`` becomes for an input that may be missing.
    """
    if model.manifest.options.get("columns") is None and hasattr(frame, "to_numpy"):
        frame = frame.to_numpy()
    return model.inputs_of(frame)


def evaluate_version(
    model: LoadedModel,
    features: Any,
    target: Any,
    *,
    classes: Sequence[Any] | None = None,
    metrics: Sequence[str] | None = None,
) -> Evaluation:
    """Evaluate a registered version, predicting through its runtime as serving does."""
    task = model.manifest.task
    if task not in (Task.CLASSIFICATION, Task.REGRESSION):
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"{model.name}:{model.version} is a {task.value} model; evaluation covers "
            "classification and regression",
        )
    outputs = model.predict_named(frame_inputs(model, features))
    primary = model.manifest.signature.outputs[0].name
    proba = outputs.get("probabilities") if task is Task.CLASSIFICATION else None
    if task is Task.CLASSIFICATION and classes is None:
        classes = model.runtime.labels()
    if classes is None and proba is not None:
        proba = None  # without the column order, probabilities cannot be scored
    return evaluate_predictions(
        task, target, outputs[primary], proba=proba, classes=classes, metrics=metrics
    )


def cross_validate(
    make: Callable[[], Any],
    features: Any,
    target: Any,
    task: Task,
    cv: CVSpec,
    *,
    seed: int,
    metrics: Sequence[str] | None = None,
    progress: ProgressSink | None = None,
) -> CrossValidation:
    """K-fold (stratified for classifiers unless told otherwise) on fresh estimators."""
    from sklearn.model_selection import KFold, StratifiedKFold

    stratified = cv.stratified if cv.stratified is not None else task is Task.CLASSIFICATION
    state = seed if cv.shuffle else None
    splitter = (
        StratifiedKFold(cv.folds, shuffle=cv.shuffle, random_state=state)
        if stratified
        else KFold(cv.folds, shuffle=cv.shuffle, random_state=state)
    )
    per_metric: dict[str, list[float]] = {}
    y = np.asarray(target)
    for index, (train, test) in enumerate(splitter.split(features, y), start=1):
        estimator = fit(make(), features.iloc[train], y[train])
        # Every fold scores against all classes, so a class missing from a fold
        # still gets its column in log loss and ROC AUC.
        classes = list(np.unique(y)) if task is Task.CLASSIFICATION else None
        proba = None
        if classes is not None and hasattr(estimator, "predict_proba"):
            proba = _align(estimator.predict_proba(features.iloc[test]), estimator, classes)
        result = evaluate_predictions(
            task,
            y[test],
            estimator.predict(features.iloc[test]),
            proba=proba,
            classes=classes,
            metrics=metrics,
        )
        for name, value in result.metrics.items():
            per_metric.setdefault(name, []).append(value)
        if progress is not None:
            progress(f"cross-validation fold {index}/{cv.folds}")
    spread = {
        name: MetricSpread(mean=float(np.mean(values)), std=float(np.std(values)), folds=values)
        for name, values in per_metric.items()
        if len(values) == cv.folds and all(math.isfinite(v) for v in values)
    }
    scheme = ("stratified-" if stratified else "") + f"{cv.folds}-fold"
    return CrossValidation(scheme=scheme, folds=cv.folds, metrics=spread)


def _align(proba: Any, estimator: Any, classes: list[Any]) -> Any:
    fitted = list(estimator.classes_)
    if fitted == classes:
        return proba
    aligned = np.zeros((len(proba), len(classes)))
    for column, label in enumerate(fitted):
        aligned[:, classes.index(label)] = proba[:, column]
    return aligned

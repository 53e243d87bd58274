"""Evaluation numbers are scikit-learn's own, and cross-validation reports mean and spread."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn import metrics as m
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aimass.contract.signature import Task
from aimass.errors import AimassError
from aimass.lifecycle.evaluate import (
    CLASSIFICATION_METRICS,
    cross_validate,
    evaluate_estimator,
    evaluate_predictions,
)
from aimass.lifecycle.spec import CVSpec


def _fitted(loader: Any) -> tuple[Any, Any, Any]:
    x, y = loader(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x[::2], y[::2])
    return model, x[1::2], y[1::2]


@pytest.mark.parametrize("loader", [load_iris, load_breast_cancer])
def test_classification_metrics_equal_sklearns(loader: Any) -> None:
    model, x, y = _fitted(loader)
    result = evaluate_estimator(model, x, y, Task.CLASSIFICATION)
    pred, proba = model.predict(x), model.predict_proba(x)
    auc = (
        m.roc_auc_score(y, proba[:, 1])
        if proba.shape[1] == 2
        else m.roc_auc_score(y, proba, multi_class="ovr")
    )
    expected = {
        "accuracy": m.accuracy_score(y, pred),
        "precision_macro": m.precision_score(y, pred, average="macro"),
        "recall_macro": m.recall_score(y, pred, average="macro"),
        "f1_macro": m.f1_score(y, pred, average="macro"),
        "precision_weighted": m.precision_score(y, pred, average="weighted"),
        "recall_weighted": m.recall_score(y, pred, average="weighted"),
        "f1_weighted": m.f1_score(y, pred, average="weighted"),
        "cohen_kappa": m.cohen_kappa_score(y, pred),
        "roc_auc_ovr": auc,
        "log_loss": m.log_loss(y, proba),
    }
    assert set(result.metrics) == set(CLASSIFICATION_METRICS)
    assert result.metrics == pytest.approx(expected, rel=1e-12)
    assert result.confusion_matrix == m.confusion_matrix(y, pred).tolist()
    assert result.rows == len(y)
    assert result.roc is not None and len(result.roc) == (1 if proba.shape[1] == 2 else 3)


def test_regression_metrics_equal_sklearns() -> None:
    x, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(x[::2], y[::2])
    pred = model.predict(x[1::2])
    result = evaluate_predictions(Task.REGRESSION, y[1::2], pred)
    assert result.metrics == pytest.approx(
        {
            "mae": m.mean_absolute_error(y[1::2], pred),
            "rmse": m.root_mean_squared_error(y[1::2], pred),
            "r2": m.r2_score(y[1::2], pred),
        },
        rel=1e-12,
    )
    assert result.confusion_matrix is None


def test_string_labels_and_missing_probabilities() -> None:
    truth = np.array(["no", "yes", "yes", "no"], dtype=object)
    pred = np.array(["no", "yes", "no", "no"], dtype=object)
    result = evaluate_predictions(
        Task.CLASSIFICATION, truth, pred, metrics=["accuracy", "log_loss"]
    )
    assert result.metrics == {"accuracy": 0.75}
    assert "predict_proba" in result.skipped["log_loss"]
    assert result.labels == ["no", "yes"]
    assert result.confusion_matrix == [[2, 0], [1, 1]]


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(AimassError, match="unknown classification metric"):
        evaluate_predictions(Task.CLASSIFICATION, [0, 1], [0, 1], metrics=["rmse"])


def test_stratified_cv_mean_and_spread_equal_sklearns() -> None:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds: list[str] = []
    result = cross_validate(
        lambda: clone(model),
        x,
        y,
        Task.CLASSIFICATION,
        CVSpec(folds=4),
        seed=3,
        metrics=["f1_macro", "accuracy"],
        progress=folds.append,
    )
    scores = cross_val_score(
        clone(model), x, y, cv=StratifiedKFold(4, shuffle=True, random_state=3), scoring="f1_macro"
    )
    assert result.scheme == "stratified-4-fold"
    assert result.metrics["f1_macro"].folds == pytest.approx(list(scores), rel=1e-12)
    assert result.metrics["f1_macro"].mean == pytest.approx(scores.mean(), rel=1e-12)
    assert result.metrics["f1_macro"].std == pytest.approx(scores.std(), rel=1e-12)
    assert result.metrics["f1_macro"].std > 0
    assert folds == [f"cross-validation fold {i}/4" for i in range(1, 5)]


def test_regression_cv_uses_plain_kfold() -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    result = cross_validate(Ridge, x, y, Task.REGRESSION, CVSpec(folds=3), seed=0, metrics=["r2"])
    scores = cross_val_score(Ridge(), x, y, cv=KFold(3, shuffle=True, random_state=0))
    assert result.scheme == "3-fold"
    assert result.metrics["r2"].mean == pytest.approx(scores.mean(), rel=1e-12)

"""The development flow: training specs, evaluation, runs, tuning, gates, cards, builds, imports.

Importing this package is cheap: the names below are imported on first use,
and scikit-learn, Optuna, matplotlib and MLflow only inside the functions
that need them::

    from aimass.lifecycle import train_and_register

    result = train_and_register("examples/iris.yaml")   # tracked, evaluated, registered
    print(result.version.ref, result.evaluation.metrics["f1_macro"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aimass.lazy import lazy_exports

if TYPE_CHECKING:
    from aimass.lifecycle.assessment import Assessment, assess
    from aimass.lifecycle.build import BuildContext, build_context
    from aimass.lifecycle.card import CardFiles, write_card
    from aimass.lifecycle.evaluate import (
        CrossValidation,
        Evaluation,
        cross_validate,
        evaluate_estimator,
        evaluate_predictions,
        evaluate_version,
    )
    from aimass.lifecycle.gates import Requirement, promote
    from aimass.lifecycle.mlflow_import import import_mlflow
    from aimass.lifecycle.runs import RunRecord, RunStore
    from aimass.lifecycle.scoring import BatchPrediction, predict_file, predict_frame
    from aimass.lifecycle.spec import TrainSpec, load_spec, parse_spec
    from aimass.lifecycle.train import Trainer, TrainResult, train_and_register
    from aimass.lifecycle.tune import Tuner, TuneResult

__all__ = [
    "Assessment",
    "BatchPrediction",
    "BuildContext",
    "CardFiles",
    "CrossValidation",
    "Evaluation",
    "Requirement",
    "RunRecord",
    "RunStore",
    "TrainResult",
    "TrainSpec",
    "Trainer",
    "TuneResult",
    "Tuner",
    "assess",
    "build_context",
    "cross_validate",
    "evaluate_estimator",
    "evaluate_predictions",
    "evaluate_version",
    "import_mlflow",
    "load_spec",
    "parse_spec",
    "predict_file",
    "predict_frame",
    "promote",
    "train_and_register",
    "write_card",
]

__getattr__ = lazy_exports(
    __name__,
    {
        name: f"aimass.lifecycle.{module}"
        for module, names in {
            "assessment": ("Assessment", "assess"),
            "build": ("BuildContext", "build_context"),
            "card": ("CardFiles", "write_card"),
            "evaluate": (
                "CrossValidation",
                "Evaluation",
                "cross_validate",
                "evaluate_estimator",
                "evaluate_predictions",
                "evaluate_version",
            ),
            "gates": ("Requirement", "promote"),
            "mlflow_import": ("import_mlflow",),
            "runs": ("RunRecord", "RunStore"),
            "scoring": ("BatchPrediction", "predict_file", "predict_frame"),
            "spec": ("TrainSpec", "load_spec", "parse_spec"),
            "train": ("Trainer", "TrainResult", "train_and_register"),
            "tune": ("Tuner", "TuneResult"),
        }.items()
        for name in names
    },
)

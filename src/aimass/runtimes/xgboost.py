"""XGBoost: the scikit-learn estimators (XGBClassifier, XGBRegressor…) and raw Boosters.

Saved in XGBoost's own model format (UBJSON by default, JSON on request),
which holds trees and parameters only, so loading runs no code. The sklearn
wrappers store their own attributes (classes, objective) inside that file and
are rebuilt from it; a raw Booster is loaded as one.

Outputs follow the scikit-learn runtime: a classifier gives ``label`` and
``probabilities``, anything else ``prediction``. The single input ``input`` is
an FP32 (or, for a float64 sample, FP64) matrix ``[-1, n_features]`` in which
NaN means missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, LoadOptions, Saved, SaveOptions
from aimass.contract.signature import Task, as_array
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.boosters import BoosterRuntime
from aimass.runtimes.loading import require

__all__ = ["XGBoostOptions", "XGBoostRuntime"]
# The estimator classes a saved file may name; anything else is refused at load
# so a manifest cannot make us instantiate an arbitrary attribute.
_ESTIMATORS = frozenset(
    {"XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor", "XGBRanker"}
)


class XGBoostOptions(SaveOptions):
    """How an XGBoost model is saved."""

    model_format: Literal["ubj", "json"] = "ubj"
    """XGBoost's own model format: UBJSON (compact) or JSON (readable)."""


class XGBoostRuntime(BoosterRuntime):
    """An XGBoost sklearn-API estimator or a raw ``xgboost.Booster``."""

    name = "xgboost"
    extra = "xgboost"
    framework = "xgboost"
    Options = XGBoostOptions
    sample_dtype = np.float32
    kept_dtype = np.float64

    @override
    @classmethod
    def is_model_file(cls, path: Path) -> bool:
        try:
            if path.suffix == ".ubj" and path.is_file():
                with path.open("rb") as f:
                    return b"learner" in f.read(64)
            if path.suffix == ".json" and path.is_file():
                with path.open("rb") as f:
                    return f.read(64).lstrip().startswith(b'{"learner"')
        except OSError:
            return False
        return False

    @override
    @classmethod
    def write(
        cls, obj: Any, directory: Path, *, sample_input: Any, options: XGBoostOptions
    ) -> Saved:
        xgb = require("xgboost", cls.extra)
        fmt = options.model_format
        if isinstance(obj, os.PathLike):
            obj = xgb.Booster(model_file=os.fspath(obj))
        file = f"model.{fmt}"
        if isinstance(obj, xgb.Booster):
            kind, estimator = "booster", None
            n_features = obj.num_features()
            obj.save_model(directory / file)
        elif isinstance(obj, xgb.XGBModel):
            estimator = type(obj).__name__
            if estimator not in _ESTIMATORS:
                raise AimassError(
                    ErrorCode.UNSUPPORTED, f"xgboost.{estimator} is not supported; save its Booster"
                )
            kind = "classifier" if hasattr(obj, "predict_proba") else "regressor"
            n_features = int(obj.n_features_in_)
            obj.save_model(directory / file)
        else:
            raise AimassError(
                ErrorCode.UNSUPPORTED, f"not an XGBoost model: {type(obj).__qualname__}"
            )
        saved_options: dict[str, Any] = {
            "file": file,
            "kind": kind,
            "estimator": estimator,
            "n_features": n_features,
        }
        if kind == "classifier":
            saved_options["classes"] = np.asarray(obj.classes_).tolist()
        # The signature comes from the reloaded file, so it describes exactly
        # what a served version returns.
        model = _load(xgb, directory, saved_options)
        sample = cls.sample_matrix(sample_input, n_features)
        return cls.described(
            sample,
            _outputs(model, kind, sample),
            version=xgb.__version__,
            fmt=f"xgboost-{fmt}",
            task=_task(kind, estimator, model),
            options=saved_options,
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> XGBoostRuntime:
        xgb = require("xgboost", cls.extra)
        return cls(manifest, _load(xgb, directory, manifest.options))

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        return _outputs(self.model, self.manifest.options["kind"], inputs["input"])


def _load(xgb: Any, directory: Path, options: dict[str, Any]) -> Any:
    path = directory / options["file"]
    if options["kind"] == "booster":
        return xgb.Booster(model_file=str(path))
    estimator = options["estimator"]
    if estimator not in _ESTIMATORS:
        raise AimassError(ErrorCode.UNSUPPORTED, f"unknown XGBoost estimator {estimator!r}")
    model = getattr(xgb, estimator)()
    model.load_model(path)
    return model


def _outputs(model: Any, kind: str, x: np.ndarray[Any, Any]) -> Arrays:
    if kind == "booster":
        import xgboost as xgb

        # The DMatrix carries no feature names, so a Booster trained on a data
        # frame would refuse it; columns are matched by position instead.
        return {"prediction": as_array(model.predict(xgb.DMatrix(x), validate_features=False))}
    if kind == "classifier":
        return {
            "label": as_array(model.predict(x, validate_features=False)),
            "probabilities": as_array(model.predict_proba(x, validate_features=False)),
        }
    return {"prediction": as_array(model.predict(x, validate_features=False))}


def _task(kind: str, estimator: str | None, model: Any) -> Task:
    if kind == "classifier":
        return Task.CLASSIFICATION
    if estimator is not None:
        return Task.REGRESSION if estimator.endswith("Regressor") else Task.CUSTOM
    objective = json.loads(model.save_config())["learner"]["objective"]["name"]
    return Task.REGRESSION if str(objective).startswith("reg:") else Task.CUSTOM

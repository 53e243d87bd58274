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
from typing import Any

import numpy as np
from typing_extensions import override

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import Manifest
from aimass.registry.signature import Signature, Task, as_array
from aimass.runtimes.base import Arrays, Capability, LoadOptions, Runtime, Saved, require

__all__ = ["XGBoostRuntime"]

_FORMATS = ("ubj", "json")
# The estimator classes a saved file may name; anything else is refused at load
# so a manifest cannot make us instantiate an arbitrary attribute.
_ESTIMATORS = frozenset(
    {"XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor", "XGBRanker"}
)


class XGBoostRuntime(Runtime):
    """An XGBoost sklearn-API estimator or a raw ``xgboost.Booster``."""

    name = "xgboost"
    extra = "xgboost"
    capabilities = frozenset({Capability.PREDICT, Capability.PREDICT_PROBA})

    def __init__(self, manifest: Manifest, model: Any) -> None:
        super().__init__(manifest)
        self.model = model

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        if isinstance(obj, os.PathLike):
            return _is_model_file(Path(obj))
        return any(c.__module__.split(".")[0] == "xgboost" for c in type(obj).__mro__)

    @override
    @classmethod
    def save(cls, obj: Any, directory: Path, *, sample_input: Any = None, **options: Any) -> Saved:
        xgb = require("xgboost", cls.extra)
        fmt = options.get("model_format", "ubj")
        if fmt not in _FORMATS:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"model_format must be one of {_FORMATS}, not {fmt!r}"
            )
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
        sample = _sample(sample_input, n_features)
        inputs = {"input": sample}
        outputs = _outputs(model, kind, sample)
        return Saved(
            framework="xgboost",
            framework_version=xgb.__version__,
            format=f"xgboost-{fmt}",
            signature=Signature.from_samples(inputs, outputs),
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


def _is_model_file(path: Path) -> bool:
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


def _sample(sample_input: Any, n_features: int) -> np.ndarray[Any, Any]:
    if sample_input is None:
        return np.zeros((1, n_features), dtype=np.float32)
    sample = as_array(sample_input)
    if sample.ndim != 2 or sample.shape[1] != n_features or sample.dtype.kind not in "fiub":
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"sample_input must be a numeric matrix with {n_features} columns, "
            f"got {sample.dtype} of shape {list(sample.shape)}",
        )
    return sample if sample.dtype == np.float64 else sample.astype(np.float32)


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

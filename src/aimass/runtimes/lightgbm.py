"""LightGBM: the scikit-learn estimators (LGBMClassifier, LGBMRegressor…) and raw Boosters.

Saved in LightGBM's native text model format, which holds trees and
parameters only, so loading runs no code. The sklearn wrappers cannot be
rebuilt from that file, so the runtime loads a Booster and reproduces what the
wrapper's predict does: a classifier's classes are recorded in the manifest,
binary probabilities become two columns and the label is the class with the
highest probability.

Outputs follow the scikit-learn runtime: a classifier gives ``label`` and
``probabilities``, anything else ``prediction``. The single input ``input`` is
an FP64 (FP32 for a float32 sample) matrix ``[-1, n_features]`` in which NaN
means missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, LoadOptions, Saved
from aimass.contract.signature import Task, as_array
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.boosters import BoosterRuntime
from aimass.runtimes.loading import require

__all__ = ["LightGBMRuntime"]

_FILE = "model.txt"


class LightGBMRuntime(BoosterRuntime):
    """A LightGBM sklearn-API estimator or a raw ``lightgbm.Booster`` (held as ``model``)."""

    name = "lightgbm"
    extra = "lightgbm"
    framework = "lightgbm"
    sample_dtype = np.float64
    kept_dtype = np.float32

    def __init__(self, manifest: Manifest, model: Any) -> None:
        super().__init__(manifest, model)
        classes = manifest.options.get("classes")
        self._classes = None if classes is None else as_array(classes)

    @override
    @classmethod
    def is_model_file(cls, path: Path) -> bool:
        if path.suffix not in (".txt", ".lgb", ".model") or not path.is_file():
            return False
        try:
            with path.open("rb") as f:
                head = f.read(64)
        except OSError:
            return False
        return head.startswith(b"tree\nversion=v")

    @override
    @classmethod
    def write(cls, obj: Any, directory: Path, *, sample_input: Any, options: Any) -> Saved:
        lgb = require("lightgbm", cls.extra)
        if isinstance(obj, os.PathLike):
            obj = lgb.Booster(model_file=os.fspath(obj))
        saved_options: dict[str, Any] = {"file": _FILE}
        if isinstance(obj, lgb.Booster):
            booster, kind, task = obj, "booster", Task.CUSTOM
        elif isinstance(obj, lgb.LGBMModel):
            if callable(obj.objective):
                raise AimassError(
                    ErrorCode.UNSUPPORTED,
                    "a LightGBM model with a Python objective function cannot be saved "
                    "safely: its predictions need that function; save booster_ instead",
                )
            booster = obj.booster_
            if hasattr(obj, "predict_proba"):
                kind, task = "classifier", Task.CLASSIFICATION
                saved_options["classes"] = np.asarray(obj.classes_).tolist()
            else:
                kind = "regressor"
                task = Task.REGRESSION if isinstance(obj, lgb.LGBMRegressor) else Task.CUSTOM
        else:
            raise AimassError(
                ErrorCode.UNSUPPORTED, f"not a LightGBM model: {type(obj).__qualname__}"
            )
        saved_options["kind"] = kind
        saved_options["n_features"] = n_features = int(booster.num_feature())
        booster.save_model(str(directory / _FILE))
        # The signature comes from the reloaded file, so it describes exactly
        # what a served version returns.
        sample = cls.sample_matrix(sample_input, n_features)
        reloaded = lgb.Booster(model_file=str(directory / _FILE))
        classes = saved_options.get("classes")
        outputs = _outputs(reloaded, kind, None if classes is None else as_array(classes), sample)
        return cls.described(
            sample,
            outputs,
            version=lgb.__version__,
            fmt="lightgbm-text",
            task=task,
            options=saved_options,
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> LightGBMRuntime:
        lgb = require("lightgbm", cls.extra)
        return cls(manifest, lgb.Booster(model_file=str(directory / manifest.options["file"])))

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        return _outputs(self.model, self.manifest.options["kind"], self._classes, inputs["input"])


def _outputs(
    booster: Any, kind: str, classes: np.ndarray[Any, Any] | None, x: np.ndarray[Any, Any]
) -> Arrays:
    raw = as_array(booster.predict(x))
    if kind != "classifier" or classes is None:
        return {"prediction": raw}
    # As LGBMClassifier.predict_proba: a binary model scores the positive class only.
    proba = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
    return {"label": classes[np.argmax(proba, axis=1)], "probabilities": proba}

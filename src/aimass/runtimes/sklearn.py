"""scikit-learn estimators and Pipelines.

Saved with skops (a format that does not run code when loaded) whenever the
estimator round-trips through it with identical predictions; otherwise with
joblib, which is a pickle: the manifest then says ``unsafe`` and the loader
only opens it after the sha256 check, and not at all when pickles are refused.

A model fitted on a data frame keeps one input per column (text columns are
BYTES) so that served requests can carry mixed types; one fitted on an array
takes a single ``input`` matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import override

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import Manifest
from aimass.registry.signature import Signature, Task, as_array
from aimass.runtimes.base import (
    Arrays,
    Capability,
    LoadOptions,
    Runtime,
    Saved,
    refuse_pickle,
    require,
)

__all__ = ["SklearnRuntime"]

_SKOPS_FILE = "model.skops"
_JOBLIB_FILE = "model.joblib"


class SklearnRuntime(Runtime):
    """Any fitted scikit-learn estimator or Pipeline."""

    name = "sklearn"
    extra = "sklearn"
    capabilities = frozenset({Capability.PREDICT, Capability.PREDICT_PROBA})

    def __init__(self, manifest: Manifest, estimator: Any) -> None:
        super().__init__(manifest)
        self.estimator = estimator
        self._columns: list[str] | None = manifest.options.get("columns")

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        return type(obj).__module__.startswith("sklearn.") and hasattr(obj, "get_params")

    @override
    @classmethod
    def save(cls, obj: Any, directory: Path, *, sample_input: Any = None, **options: Any) -> Saved:
        sklearn = require("sklearn", cls.extra)
        from sklearn.base import is_classifier, is_regressor

        columns = _columns_of(sample_input)
        sample = _sample(obj, sample_input)
        inputs = _to_named(sample, columns)
        outputs = _outputs(obj, sample)
        fmt, trusted = _dump(obj, directory, sample, options.get("prefer_safe", True))
        task = (
            Task.CLASSIFICATION
            if is_classifier(obj)
            else Task.REGRESSION
            if is_regressor(obj)
            else Task.CUSTOM
        )
        saved_options: dict[str, Any] = {"trusted": trusted}
        if columns is not None:
            saved_options["columns"] = columns
        return Saved(
            framework="scikit-learn",
            framework_version=sklearn.__version__,
            format=fmt,
            signature=Signature.from_samples(inputs, outputs),
            task=task,
            unsafe=fmt == "pickle",
            options=saved_options,
        )

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> SklearnRuntime:
        require("sklearn", cls.extra)
        if manifest.format == "skops":
            import skops.io

            estimator = skops.io.load(directory / _SKOPS_FILE, trusted=manifest.options["trusted"])
        else:
            refuse_pickle(options, "this scikit-learn model")
            import joblib

            estimator = joblib.load(directory / _JOBLIB_FILE)
        return cls(manifest, estimator)

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        return _outputs(self.estimator, self._native(inputs))

    @override
    def to_inputs(self, value: Any) -> Arrays:
        if self._columns is not None and hasattr(value, "columns"):
            return _to_named(value, self._columns)
        return super().to_inputs(value)

    def _native(self, inputs: Arrays) -> Any:
        if self._columns is None:
            return next(iter(inputs.values()))
        import pandas as pd

        return pd.DataFrame(
            {c: _as_text(inputs[c].reshape(len(inputs[c]), -1)[:, 0]) for c in self._columns}
        )


def _as_text(column: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # Binary BYTES tensors arrive as bytes, JSON ones as str; the model was fitted on str.
    if column.dtype.kind != "O" or not any(isinstance(v, bytes) for v in column):
        return column
    return np.array([v.decode() if isinstance(v, bytes) else v for v in column], dtype=object)


def _columns_of(sample_input: Any) -> list[str] | None:
    if sample_input is not None and hasattr(sample_input, "columns"):
        return [str(c) for c in sample_input.columns]
    return None


def _sample(obj: Any, sample_input: Any) -> Any:
    if sample_input is not None:
        return sample_input
    if hasattr(obj, "feature_names_in_"):
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            "this estimator was fitted on a data frame: pass sample_input= (a few rows of it) "
            "so the signature can record each column's type",
        )
    n_features = getattr(obj, "n_features_in_", None)
    if n_features is None:
        raise AimassError(
            ErrorCode.INVALID_INPUT, "cannot tell this estimator's input shape: pass sample_input="
        )
    return np.zeros((1, int(n_features)))


def _to_named(sample: Any, columns: list[str] | None) -> Arrays:
    if columns is None:
        return {"input": as_array(sample)}
    return {c: as_array(sample[c].to_numpy()) for c in columns}


def _outputs(estimator: Any, native: Any) -> Arrays:
    if hasattr(estimator, "predict"):
        out = {
            "label" if hasattr(estimator, "classes_") else "prediction": as_array(
                estimator.predict(native)
            )
        }
        if hasattr(estimator, "predict_proba"):
            out["probabilities"] = as_array(estimator.predict_proba(native))
        return out
    if hasattr(estimator, "transform"):
        return {"output": as_array(estimator.transform(native))}
    raise AimassError(ErrorCode.UNSUPPORTED, "this estimator has neither predict nor transform")


def _dump(obj: Any, directory: Path, sample: Any, prefer_safe: bool) -> tuple[str, list[str]]:
    if prefer_safe:
        try:
            import skops.io

            path = directory / _SKOPS_FILE
            skops.io.dump(obj, path)
            trusted = skops.io.get_untrusted_types(file=path)
            again = skops.io.load(path, trusted=trusted)
            if _same(_outputs(obj, sample), _outputs(again, sample)):
                return "skops", trusted
            path.unlink()
        except Exception:
            (directory / _SKOPS_FILE).unlink(missing_ok=True)
    import joblib

    joblib.dump(obj, directory / _JOBLIB_FILE)
    return "pickle", []


def _same(a: Arrays, b: Arrays) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

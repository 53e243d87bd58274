"""scikit-learn estimators and Pipelines.

Saved with skops (a format that does not run code when loaded) whenever the
estimator round-trips through it with identical predictions; otherwise with
joblib, which is a pickle: the manifest then says ``unsafe`` and the loader
only opens it after the sha256 check, and not at all when pickles are refused.

A model fitted on a data frame keeps one input per column (text columns are
BYTES) so that served requests can carry mixed types; one fitted on an array
takes a single ``input`` matrix.

A model fitted on an array also gets an ONNX *serving plan* when the ``onnx``
extra is installed: scikit-learn validates its input on every call, which
costs about a millisecond even for a four-feature Pipeline, and importing it
(with skops) takes seconds, while onnxruntime answers the same batch in tens
of microseconds. At save time the estimator is converted with skl2onnx
(float64 input, classifiers without ZipMap) and the plan is kept only if it
reproduces every output on the sample plus deterministic synthetic rows, as a
whole batch and row by row: same names, dtypes and shapes, labels and integers
exactly equal, floats within ``rtol=1e-9, atol=1e-12``. If scikit-learn
refuses NaN and infinity, the plan refuses them too (INVALID_INPUT); if it
answers them, the plan must answer alike. Anything else (an estimator skl2onnx
cannot convert, a mismatch, an error) means no plan, and the model is served by
scikit-learn as before. The plan is one more artifact file (``serving.onnx``),
hashed like the others, described by ``options["onnx_plan"]`` in the manifest.

A version with a plan loads without importing scikit-learn or skops and
predicts through onnxruntime; :attr:`SklearnRuntime.estimator` loads the saved
estimator on first use (a pickle only then, so with pickles refused a pickled
version still serves through its plan, and touching ``estimator`` is refused).
Without onnxruntime at load time the estimator serves, as it does for versions
without a plan. Turn plans off with
``AIMASS_REGISTRY__ONNX_SERVING_PLANS=false`` or the save option
``onnx_serving_plan=False``.
"""

from __future__ import annotations

import io
import json
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import override

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, LoadOptions, Runtime, Saved, SaveOptions
from aimass.contract.signature import Signature, Task, as_array
from aimass.convert.plan import Plan, open_plan
from aimass.convert.sklearn import make_sklearn_plan
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.loading import Lazy, artifact_path, refuse_pickle, require
from aimass.runtimes.pickles import refuse_unportable

__all__ = ["SklearnOptions", "SklearnRuntime"]

_SKOPS_FILE = "model.skops"
_SKOPS_SCHEMA = "schema.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
_JOBLIB_FILE = "model.joblib"
_IMPORTABLE_HINT = (
    "define it with def at the top level of a module the serving process can import "
    "(a .py file on its PYTHONPATH, or an installed package), then register again"
)


class SklearnOptions(SaveOptions):
    """How a scikit-learn model is saved (defaults from the registry settings)."""

    prefer_safe: bool = True
    """Save with skops when the model round-trips through it, else joblib (a pickle)."""
    onnx_serving_plan: bool = True
    """Also save a verified ONNX serving plan when the model converts (the onnx extra)."""


class SklearnRuntime(Runtime):
    """Any fitted scikit-learn estimator or Pipeline.

    :attr:`plan` is the ONNX serving plan that answers :meth:`predict`, or
    None when the version has none or onnxruntime is missing.
    """

    name = "sklearn"
    extra = "sklearn"
    Options = SklearnOptions

    def __init__(
        self,
        manifest: Manifest,
        directory: Path,
        options: LoadOptions,
        *,
        plan: Plan | None = None,
        estimator: Any = None,
    ) -> None:
        super().__init__(manifest)
        self.plan = plan
        self._estimator: Lazy[Any] = Lazy(
            lambda: _load_estimator(directory, manifest, options, lazily=True), estimator
        )
        self._columns: list[str] | None = manifest.options.get("columns")

    @property
    def estimator(self) -> Any:
        """The fitted estimator, loaded from the version's files on first use if a plan serves."""
        return self._estimator.get()

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        return type(obj).__module__.startswith("sklearn.") and hasattr(obj, "get_params")

    @override
    @classmethod
    def write(
        cls, obj: Any, directory: Path, *, sample_input: Any, options: SklearnOptions
    ) -> Saved:
        sklearn = require("sklearn", cls.extra)
        from sklearn.base import is_classifier, is_regressor

        # Both skops and joblib store functions and classes by name: one that
        # only this process can import would save, load here, and fail elsewhere.
        refuse_unportable(obj, _IMPORTABLE_HINT)
        columns = _columns_of(sample_input)
        sample = _sample(obj, sample_input)
        inputs = _to_named(sample, columns)
        outputs = _outputs(obj, sample)
        fmt, trusted = _dump(obj, directory, sample, options.prefer_safe)
        signature = Signature.from_samples(inputs, outputs)
        task = (
            Task.CLASSIFICATION
            if is_classifier(obj)
            else Task.REGRESSION
            if is_regressor(obj)
            else Task.CUSTOM
        )
        saved_options: dict[str, Any] = {"trusted": trusted}
        if hasattr(obj, "classes_"):
            saved_options["classes"] = np.asarray(obj.classes_).tolist()
        if columns is not None:
            saved_options["columns"] = columns
        elif options.onnx_serving_plan:
            plan = make_sklearn_plan(obj, sample, directory, signature, partial(_outputs, obj))
            if plan is not None:
                saved_options["onnx_plan"] = plan
        return Saved(
            framework="scikit-learn",
            framework_version=sklearn.__version__,
            format=fmt,
            signature=signature,
            task=task,
            unsafe=fmt == "pickle",
            options=saved_options,
        )

    @override
    @classmethod
    def unpickles_on_load(cls, manifest: Manifest) -> bool:
        # A plan serves without the estimator; _load_estimator guards the pickle.
        return "onnx_plan" not in manifest.options

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> SklearnRuntime:
        plan = open_plan(directory, manifest)
        if plan is not None:
            return cls(manifest, directory, options, plan=plan)
        estimator = _load_estimator(directory, manifest, options)
        return cls(manifest, directory, options, estimator=estimator)

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        if self.plan is not None:
            return self.plan.run(inputs)
        return _outputs(self.estimator, self._native(inputs))

    @override
    def labels(self) -> list[Any] | None:
        recorded = super().labels()
        if recorded is not None:
            return recorded
        # Versions saved before their classes were recorded: ask the estimator.
        found = getattr(self.estimator, "classes_", None)
        return None if found is None else list(found)

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


def _load_estimator(
    directory: Path, manifest: Manifest, options: LoadOptions, *, lazily: bool = False
) -> Any:
    """The estimator; ``lazily`` (after the version loaded) checks its file again first."""
    require("sklearn", SklearnRuntime.extra)
    if manifest.format == "skops":
        import skops.io

        path = artifact_path(directory, _SKOPS_FILE, manifest, recheck=lazily)
        return skops.io.load(path, trusted=manifest.options["trusted"])
    refuse_pickle(options.allow_pickle, "this scikit-learn model")
    import joblib

    path = artifact_path(directory, _JOBLIB_FILE, manifest, recheck=lazily)
    return joblib.load(path)


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
            path.write_bytes(_canonical_skops(skops.io.dumps(obj)))
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


def _canonical_skops(data: bytes) -> bytes:
    """The same skops archive, byte for byte the same for the same model in any process.

    skops names its entries and ``__id__`` fields after ``id()`` (and bytes
    after a uuid) and stamps each entry with the time, so the same model saved
    twice never shares its artifact. Ids and names are renumbered in the order
    they first appear in the schema (a one-to-one renaming, so shared objects
    stay shared), entries are written sorted with a fixed date, and the padding
    bytes of structured arrays (a tree's nodes), left uninitialised by numpy,
    are zeroed.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    schema = json.loads(entries.pop(_SKOPS_SCHEMA))
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def renumber(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                renumber(item)
        elif isinstance(node, dict):
            if isinstance(node.get("__id__"), int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            name = node.get("file")
            if "__loader__" in node and isinstance(name, str) and name in entries:
                node["file"] = names.setdefault(name, f"{len(names)}{Path(name).suffix}")
            for value in node.values():
                renumber(value)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        fixed = {names.get(name, name): _zero_padding(content) for name, content in entries.items()}
        fixed[_SKOPS_SCHEMA] = json.dumps(schema, indent=2).encode()
        for name in sorted(fixed):
            target.writestr(zipfile.ZipInfo(name, date_time=_ZIP_EPOCH), fixed[name])
    return out.getvalue()


def _zero_padding(content: bytes) -> bytes:
    if not content.startswith(b"\x93NUMPY"):
        return content
    array = np.load(io.BytesIO(content), allow_pickle=False)
    if array.dtype.names is None:
        return content
    # Fresh zeroed bytes: zeros_like and copies fill only the fields, not the padding.
    clean = np.frombuffer(bytearray(array.nbytes), dtype=array.dtype).reshape(array.shape)
    for name in array.dtype.names:
        clean[name] = array[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def _same(a: Arrays, b: Arrays) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

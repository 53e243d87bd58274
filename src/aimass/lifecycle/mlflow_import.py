"""Import an MLflow model directory (an ``MLmodel`` file and its artifacts) as a version.

The ``sklearn`` flavor is read without MLflow: its skops file (MLflow's
default) is opened trusting only the types the ``MLmodel`` lists (or, on
request, every type it holds), and a pickle or cloudpickle file only when the
registry allows pickles; the estimator is then registered like any
scikit-learn model. Any other model with a ``python_function`` flavor is
registered as a :class:`MlflowPyfuncModel`, which ships the whole directory
and loads it with ``mlflow.pyfunc`` (so serving it needs MLflow installed);
a directory holding a pickle (``python_model.pkl``, cloudpickle) makes the
version ``unsafe``, and with pickles off it is refused before MLflow opens it.

The MLflow signature is kept: its input schema decides the sample the
aimass signature is inferred from (column names and types, or the tensor's
dtype and shape), and the original is stored in the version's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aimass.contract.manifest import Lineage, LineageMethod
from aimass.contract.runtime import Arrays
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry, VersionInfo
from aimass.runtimes.custom import PythonModel
from aimass.runtimes.loading import refuse_pickle, require

__all__ = ["MlflowModel", "MlflowPyfuncModel", "import_mlflow", "read_mlmodel"]

_MLMODEL = "MLmodel"
_ARTIFACT = "mlflow_model"
# MLflow column types -> numpy dtypes of a sample value.
_COLUMN_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "object",
    "binary": "object",
}


class MlflowModel:
    """A parsed MLflow model directory."""

    def __init__(self, directory: Path, mlmodel: dict[str, Any]) -> None:
        self.directory = directory
        self.mlmodel = mlmodel

    @property
    def flavors(self) -> dict[str, Any]:
        """The flavors the directory offers (``sklearn``, ``python_function``…)."""
        flavors: dict[str, Any] = self.mlmodel.get("flavors") or {}
        return flavors

    @property
    def signature(self) -> dict[str, Any] | None:
        """The MLflow signature with its schemas decoded from JSON, if one was logged."""
        raw = self.mlmodel.get("signature")
        if not raw:
            return None
        return {
            key: json.loads(value) if isinstance(value, str) else value
            for key, value in raw.items()
        }

    def input_schema(self) -> list[dict[str, Any]] | None:
        """The input schema: a list of column or tensor specs."""
        signature = self.signature
        return signature.get("inputs") if signature else None

    def input_example(self) -> Any:
        """The logged input example as a data frame or array, if there is one."""
        info = self.mlmodel.get("saved_input_example_info") or {}
        path = self.directory / info.get("artifact_path", "input_example.json")
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        if info.get("type") == "dataframe" and isinstance(raw, dict) and "columns" in raw:
            import pandas as pd

            return pd.DataFrame(raw["data"], columns=raw["columns"])
        if isinstance(raw, dict) and "inputs" in raw:
            raw = raw["inputs"]
        return np.asarray(raw)


def read_mlmodel(directory: Path) -> MlflowModel:
    """Parse ``directory/MLmodel``; NOT_FOUND or INVALID_INPUT says what is wrong."""
    path = directory / _MLMODEL
    if not path.is_file():
        raise AimassError(
            ErrorCode.NOT_FOUND, f"{directory} is not an MLflow model directory (no MLmodel file)"
        )
    try:
        mlmodel = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AimassError(ErrorCode.INVALID_INPUT, f"{path}: not valid YAML: {exc}") from None
    if not isinstance(mlmodel, dict) or not isinstance(mlmodel.get("flavors"), dict):
        raise AimassError(ErrorCode.INVALID_INPUT, f"{path} has no 'flavors' mapping")
    return MlflowModel(directory, mlmodel)


def _sample(model: MlflowModel, wants_frame: bool) -> Any:
    """Sample input matching the MLflow input schema (the logged example when there is one)."""
    import pandas as pd

    schema = model.input_schema() or []
    columns = [s for s in schema if s.get("type") != "tensor" and "name" in s]
    example = model.input_example()
    if columns:
        if example is None:
            example = pd.DataFrame(
                {c["name"]: ["" if c["type"] in ("string", "binary") else 0] for c in columns}
            )
        if not isinstance(example, pd.DataFrame):
            example = pd.DataFrame(example, columns=[c["name"] for c in columns])
        for column in columns:
            dtype = _COLUMN_TYPES.get(column["type"])
            if dtype is not None and column["name"] in example.columns:
                example[column["name"]] = example[column["name"]].astype(dtype)
        return example if wants_frame else example.to_numpy()
    tensors = [s for s in schema if s.get("type") == "tensor"]
    if tensors:
        spec = tensors[0]["tensor-spec"]
        dtype = np.dtype(spec["dtype"])
        if example is not None:
            return np.asarray(example).astype(dtype)
        shape = [1 if d == -1 else d for d in spec["shape"]]
        return np.zeros(shape, dtype=dtype)
    if example is not None:
        return example
    raise AimassError(
        ErrorCode.INVALID_INPUT,
        f"{model.directory}: the model has neither a signature nor an input example, "
        "so its inputs cannot be described",
    )


def _load_sklearn(model: MlflowModel, registry: Registry, trust_types: bool) -> Any:
    flavor = model.flavors["sklearn"]
    path = model.directory / flavor.get("pickled_model", "model.pkl")
    if not path.is_file():
        raise AimassError(ErrorCode.INVALID_INPUT, f"{path}: the sklearn flavor's file is missing")
    serialization = flavor.get("serialization_format", "cloudpickle")
    if serialization == "skops":
        import skops.io

        trusted = list(flavor.get("skops_trusted_types") or [])
        untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in trusted]
        if untrusted and not trust_types:
            raise AimassError(
                ErrorCode.UNSAFE_FORMAT,
                f"{path.name} holds types its MLmodel does not list as trusted: {untrusted}; "
                "import with --trust if you trust this model",
            )
        return skops.io.load(path, trusted=trusted + untrusted)
    refuse_pickle(registry.load_options.allow_pickle, f"{path.name} ({serialization})")
    import joblib

    return joblib.load(path)


class MlflowPyfuncModel(PythonModel):
    """An MLflow ``python_function`` model, loaded with ``mlflow.pyfunc`` from its directory."""

    def __init__(self) -> None:
        self._model: Any = None
        self._columns: list[str] | None = None

    def load(self, artifacts: Path) -> None:
        """Open the shipped MLflow directory."""
        mlflow_pyfunc = require("mlflow.pyfunc", "mlflow")
        directory = artifacts / _ARTIFACT
        schema = read_mlmodel(directory).input_schema() or []
        names = [s["name"] for s in schema if s.get("type") != "tensor" and "name" in s]
        self._columns = names or None
        self._model = mlflow_pyfunc.load_model(str(directory))

    def predict(self, inputs: Arrays) -> Arrays:
        """Predict with the MLflow model: columns as a data frame, a tensor as an array."""
        import pandas as pd

        if self._columns is not None:
            native: Any = pd.DataFrame({c: inputs[c] for c in self._columns})
        else:
            native = next(iter(inputs.values()))
        result = self._model.predict(native)
        if isinstance(result, pd.DataFrame):
            return {str(c): result[c].to_numpy() for c in result.columns}
        if isinstance(result, pd.Series):
            return {"prediction": result.to_numpy()}
        return {"prediction": np.asarray(result)}


def _named(sample: Any) -> Arrays:
    if hasattr(sample, "columns"):
        return {str(c): np.asarray(sample[c].to_numpy()) for c in sample.columns}
    return {"input": np.asarray(sample)}


def import_mlflow(
    registry: Registry,
    directory: Path,
    name: str,
    *,
    description: str = "",
    tags: dict[str, str] | None = None,
    trust_types: bool = False,
) -> VersionInfo:
    """Register the MLflow model in ``directory`` as the next version of ``name``."""
    model = read_mlmodel(directory)
    metadata = {
        "mlflow": {
            "source": str(directory.resolve()),
            "flavors": sorted(model.flavors),
            "signature": model.signature,
            "mlflow_version": model.mlmodel.get("mlflow_version"),
            "run_id": model.mlmodel.get("run_id"),
            "model_uuid": model.mlmodel.get("model_uuid"),
        }
    }
    lineage = Lineage(
        method=LineageMethod.IMPORTED,
        params={"from": "mlflow", "model_uuid": model.mlmodel.get("model_uuid")},
    )
    if "sklearn" in model.flavors:
        estimator = _load_sklearn(model, registry, trust_types)
        sample = _sample(model, wants_frame=hasattr(estimator, "feature_names_in_"))
        return registry.register(
            estimator,
            name,
            sample_input=sample,
            description=description,
            tags=tags,
            metadata={**metadata, "training": {"extras": ["sklearn"]}},
            lineage=lineage,
        )
    if "python_function" in model.flavors:
        require("mlflow.pyfunc", "mlflow")
        sample = _sample(model, wants_frame=True)
        return registry.register(
            MlflowPyfuncModel(),
            name,
            sample_input=_named(sample),
            artifacts={_ARTIFACT: str(directory)},
            code_paths=[],
            description=description,
            tags=tags,
            metadata={**metadata, "training": {"extras": ["mlflow"]}},
            lineage=lineage,
        )
    raise AimassError(
        ErrorCode.UNSUPPORTED,
        f"{directory}: flavors {sorted(model.flavors)}; aimass imports 'sklearn' and "
        "'python_function' models",
    )

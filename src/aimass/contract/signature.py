"""Signatures: the named, typed tensors a model version takes and returns.

Datatypes are the Open Inference Protocol's, so a signature is at once the
registry's record, the server's validation rule and the model metadata that
clients read. A dimension of ``-1`` is variable; the first dimension is always
the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aimass.errors import AimassError, ErrorCode

__all__ = [
    "Datatype",
    "Signature",
    "Task",
    "TensorSpec",
    "as_array",
    "infer_spec",
    "specs_from_mapping",
]


class Task(StrEnum):
    """What a model is for; it picks sensible defaults in serving and evaluation."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    EMBEDDING = "embedding"
    TEXT_GENERATION = "text-generation"
    TEXT_CLASSIFICATION = "text-classification"
    CUSTOM = "custom"


class Datatype(StrEnum):
    """Open Inference Protocol tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    # Enum hashes members in Python; these are strings equal to their names,
    # so str's C hash agrees with it and keeps per-request lookups cheap.
    __hash__ = str.__hash__

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy dtype that holds this datatype (object for BYTES)."""
        return _NUMPY_DTYPES[self]

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> Datatype:
        """The OIP datatype for a numpy dtype; strings and objects are BYTES."""
        if dtype.kind in ("U", "S", "O"):
            return cls.BYTES
        try:
            return _FROM_NUMPY[np.dtype(dtype).name]
        except KeyError:
            raise AimassError(
                ErrorCode.UNSUPPORTED,
                f"numpy dtype {dtype} has no Open Inference Protocol datatype",
            ) from None


_TO_NUMPY: dict[Datatype, str] = {
    Datatype.BOOL: "bool",
    Datatype.UINT8: "uint8",
    Datatype.UINT16: "uint16",
    Datatype.UINT32: "uint32",
    Datatype.UINT64: "uint64",
    Datatype.INT8: "int8",
    Datatype.INT16: "int16",
    Datatype.INT32: "int32",
    Datatype.INT64: "int64",
    Datatype.FP16: "float16",
    Datatype.FP32: "float32",
    Datatype.FP64: "float64",
    Datatype.BYTES: "object",
}
_FROM_NUMPY: dict[str, Datatype] = {v: k for k, v in _TO_NUMPY.items() if k is not Datatype.BYTES}
_NUMPY_DTYPES: dict[Datatype, np.dtype[Any]] = {k: np.dtype(v) for k, v in _TO_NUMPY.items()}


class TensorSpec(BaseModel):
    """One named tensor: datatype and shape (``-1`` marks a variable dimension)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def check(self, value: np.ndarray[Any, Any], *, kind: str = "input") -> np.ndarray[Any, Any]:
        """Return ``value`` if it fits this spec, else raise INVALID_INPUT naming the mismatch.

        Numeric values are converted to the declared dtype when that loses
        nothing a user would notice (ints to floats, float64 to float32); a
        value of the wrong kind (text for numbers) is refused.
        """
        if len(value.shape) != len(self.shape) or any(
            want not in (-1, got) for want, got in zip(self.shape, value.shape, strict=True)
        ):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{kind} '{self.name}': shape {list(value.shape)} does not match "
                f"the signature's {list(self.shape)}",
                field=self.name,
            )
        if self.datatype is Datatype.BYTES:
            if value.dtype.kind not in ("U", "S", "O"):
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"{kind} '{self.name}': expected BYTES (text), "
                    f"got {Datatype.from_numpy(value.dtype)}",
                    field=self.name,
                )
            return value
        if value.dtype.kind in ("U", "S", "O"):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{kind} '{self.name}': expected {self.datatype.value}, got text",
                field=self.name,
            )
        if self.datatype is Datatype.BOOL and value.dtype.kind != "b":
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{kind} '{self.name}': expected BOOL, got {Datatype.from_numpy(value.dtype)}",
                field=self.name,
            )
        if value.dtype.kind == "f" and self.datatype.numpy.kind in ("i", "u"):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{kind} '{self.name}': expected {self.datatype.value}, got floating point",
                field=self.name,
            )
        return value.astype(self.datatype.numpy, copy=False)


class Signature(BaseModel):
    """The inputs and outputs of a model version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = Field(default=())

    @classmethod
    def from_samples(cls, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Signature:
        """A signature inferred from named sample inputs and the outputs they produced."""
        return cls(inputs=specs_from_mapping(inputs), outputs=specs_from_mapping(outputs))

    def input(self, name: str) -> TensorSpec:
        """The input spec called ``name``; INVALID_INPUT if there is none."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"unknown input '{name}'; the model takes {[s.name for s in self.inputs]}",
            field=name,
        )

    def validate_inputs(
        self, inputs: Mapping[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Check a request's inputs against the signature before the model sees them.

        All declared inputs must be present, no others, and every input must
        share one batch size.
        """
        declared = {s.name for s in self.inputs}
        for name in inputs:
            if name not in declared:
                self.input(name)  # raises, naming the unknown input and the declared ones
        missing = [s.name for s in self.inputs if s.name not in inputs]
        if missing:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"missing input(s) {missing}", field=missing[0]
            )
        checked = {name: self.input(name).check(value) for name, value in inputs.items()}
        sizes = {name: v.shape[0] if v.ndim else 1 for name, v in checked.items()}
        if len(set(sizes.values())) > 1:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"inputs disagree on the batch size: {sizes}"
            )
        return checked


def as_array(value: Any) -> np.ndarray[Any, Any]:
    """Turn a list, tensor, Series or array into a numpy array; text becomes ``object``."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S"):
        array = array.astype(object)
    return array


def infer_spec(name: str, value: Any, *, variable_batch: bool = True) -> TensorSpec:
    """A tensor spec from a sample value; the batch dimension becomes ``-1``."""
    array = as_array(value)
    if (
        array.dtype.kind == "O"
        and array.size
        and not all(isinstance(v, str | bytes) for v in array.ravel())
    ):
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"sample '{name}' holds objects that are neither text nor numbers",
        )
    shape = list(array.shape) or [1]
    if variable_batch:
        shape[0] = -1
    return TensorSpec(name=name, datatype=Datatype.from_numpy(array.dtype), shape=tuple(shape))


def specs_from_mapping(values: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    """Specs for a mapping of named sample values, in the mapping's order."""
    return tuple(infer_spec(name, value) for name, value in values.items())

"""Signatures: the named, typed tensors a model version takes and returns.

Datatypes are the Open Inference Protocol's, so a signature is at once the
registry's record, the server's validation rule and the model metadata that
clients read. A dimension of ``-1`` is variable; the first dimension is always
the batch.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from aimass.errors import AimassError, ErrorCode

__all__ = [
    "MISSING",
    "NULLABLE_DATATYPES",
    "Datatype",
    "Signature",
    "Task",
    "TensorSpec",
    "as_array",
    "conversion_error",
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
    """One named tensor: datatype and shape (``-1`` marks a variable dimension).

    ``nullable`` says its elements may be missing (the model was trained on
    data with gaps and handles them): only floating-point and BYTES tensors
    can be, since integers have no missing value. A missing element is NaN in
    a floating tensor and :data:`MISSING` in a BYTES one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    nullable: bool = Field(default=False, description="Whether elements may be missing")

    @model_serializer(mode="wrap")
    def _nullable_only_when_true(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A manifest without gaps is then written as before the field existed,
        # so older releases sharing the registry still read it.
        data = handler(self)
        if not self.nullable and isinstance(data, dict):
            data.pop("nullable", None)
        return data

    @model_validator(mode="after")
    def _only_floats_and_text_may_be_missing(self) -> TensorSpec:
        if self.nullable and self.datatype not in NULLABLE_DATATYPES:
            raise ValueError(
                f"tensor '{self.name}': {self.datatype.value} cannot hold missing values; "
                "only FP16, FP32, FP64 and BYTES can (store integers with gaps as FP64)"
            )
        return self

    def check(self, value: np.ndarray[Any, Any], *, kind: str = "input") -> np.ndarray[Any, Any]:
        """Return ``value`` if it fits this spec, else raise INVALID_INPUT naming the mismatch.

        A value of another datatype is converted only when the conversion is
        lossless (:func:`conversion_error` says which are); anything else is
        refused with the datatype sent and the one expected.
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
        expected = self.datatype
        target = expected.numpy
        if value.dtype == target:
            return value
        sent = _datatype_of(value.dtype)
        if sent is expected:
            # Same datatype in another byte order or string kind: nothing to lose.
            return value if sent is Datatype.BYTES else value.astype(target)
        problem = conversion_error(sent, expected)
        if problem is not None:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"{kind} '{self.name}': {problem}", field=self.name
            )
        return value.astype(target)


MISSING: float = np.nan
"""A missing element of a BYTES tensor, as the runtime sees it.

It is what pandas reads an empty cell of a text column as (a float NaN in an
object column), so a served frame holds exactly what the training frame held
and imputers treat it the same way.
"""

NULLABLE_DATATYPES = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64, Datatype.BYTES})
"""The datatypes whose elements may be missing."""


def _lossless(sent: Datatype, expected: Datatype) -> bool:
    if Datatype.BYTES in (sent, expected):
        return False
    have, want = sent.numpy, expected.numpy
    # numpy calls 64-bit integers to float64 safe, but FP64 holds every
    # integer only up to 2**53: a larger id or count would change silently.
    if have.kind in "iu" and have.itemsize == 8 and want.kind == "f":
        return False
    return bool(np.can_cast(have, want, "safe"))


_LOSSLESS = frozenset(
    (sent, expected)
    for sent in Datatype
    for expected in Datatype
    if sent is not expected and _lossless(sent, expected)
)


def conversion_error(sent: Datatype, expected: Datatype) -> str | None:
    """Why a tensor of ``sent`` cannot be given to an input of ``expected``; None if it can.

    The one casting rule of every protocol: a datatype is converted only when
    each of its values is exactly representable in the expected one (numpy's
    safe casting, without 64-bit integers to FP64). So FP32 becomes FP64 and
    INT32 becomes INT64 or FP64, while FP64 to FP32, floats to integers,
    narrowing, signed to unsigned, INT64 to FP64 and text to numbers (or back)
    are refused.
    """
    if sent is expected or (sent, expected) in _LOSSLESS:
        return None
    if Datatype.BYTES in (sent, expected):
        got = "text (BYTES)" if sent is Datatype.BYTES else sent.value
        return f"expected {expected.value}, got {got}; text and numbers are never converted"
    return (
        f"expected {expected.value}, got {sent.value}; {sent.value} to {expected.value} "
        f"can lose information, so send {expected.value}"
    )


_BY_DTYPE: dict[np.dtype[Any], Datatype] = {}


def _datatype_of(dtype: np.dtype[Any]) -> Datatype:
    found = _BY_DTYPE.get(dtype)
    if found is None:
        found = _BY_DTYPE[dtype] = Datatype.from_numpy(dtype)
    return found


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
        self,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        *,
        missing: Collection[str] = (),
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Check a request's inputs against the signature before the model sees them.

        All declared inputs must be present, no others, and every input must
        share one batch size. ``missing`` names the inputs the request marked
        as holding missing values (JSON ``null``); each must be nullable.
        """
        declared = {s.name for s in self.inputs}
        for name in inputs:
            if name not in declared:
                self.input(name)  # raises, naming the unknown input and the declared ones
        absent = [s.name for s in self.inputs if s.name not in inputs]
        if absent:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"missing input(s) {absent}", field=absent[0]
            )
        self.refuse_missing(missing)
        checked = {name: self.input(name).check(value) for name, value in inputs.items()}
        sizes = {name: v.shape[0] if v.ndim else 1 for name, v in checked.items()}
        if len(set(sizes.values())) > 1:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"inputs disagree on the batch size: {sizes}"
            )
        return checked

    def refuse_missing(self, missing: Collection[str]) -> None:
        """INVALID_INPUT naming the first of ``missing`` whose spec is not nullable."""
        for name in missing:
            if not self.input(name).nullable:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"input '{name}' has missing values (null), but the model's signature "
                    "says it may not; send a value for every element",
                    field=name,
                )

    def conform(
        self, inputs: Mapping[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        """In-process values converted to the declared numeric datatypes where no value changes.

        For Python callers (``predict`` on a list or a data frame, evaluation
        on a file), whose arrays' dtypes numpy or pandas guessed: integers
        read from a CSV column meant as FP64, say. Requests over a protocol
        declare their datatype and are held to :func:`conversion_error`.
        """
        specs = {spec.name: spec for spec in self.inputs}
        conformed = dict(inputs)
        for name, value in inputs.items():
            spec = specs.get(name)
            if spec is None or value.dtype.kind not in "iuf":
                continue
            target = spec.datatype.numpy
            if target.kind not in "iuf" or value.dtype == target:
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                converted = value.astype(target)
                exact = np.array_equal(converted.astype(value.dtype), value, equal_nan=True)
            if exact:
                conformed[name] = converted
        return conformed


def as_array(value: Any) -> np.ndarray[Any, Any]:
    """Turn a list, tensor, Series or array into a numpy array; text becomes ``object``."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S"):
        array = array.astype(object)
    return array


def infer_spec(name: str, value: Any, *, variable_batch: bool = True) -> TensorSpec:
    """A tensor spec from a sample value; the batch dimension becomes ``-1``.

    A sample with missing values (NaN in numbers; None or NaN among text, as
    pandas reads empty cells) makes the spec nullable.
    """
    array = as_array(value)
    nullable = False
    if array.dtype.kind == "O" and array.size:
        gaps = np.array([_is_missing(v) for v in array.ravel()])
        texts = [v for v, gap in zip(array.ravel(), gaps, strict=True) if not gap]
        if not all(isinstance(v, str | bytes) for v in texts):
            raise AimassError(
                ErrorCode.UNSUPPORTED,
                f"sample '{name}' holds objects that are neither text nor numbers",
            )
        nullable = bool(gaps.any())
        if not texts:  # every element missing: nothing says text, so numbers
            array = np.full(array.shape, np.nan)
    elif array.dtype.kind == "f":
        nullable = bool(np.isnan(array).any())
    shape = list(array.shape) or [1]
    if variable_batch:
        shape[0] = -1
    return TensorSpec(
        name=name,
        datatype=Datatype.from_numpy(array.dtype),
        shape=tuple(shape),
        nullable=nullable,
    )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def specs_from_mapping(values: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    """Specs for a mapping of named sample values, in the mapping's order."""
    return tuple(infer_spec(name, value) for name, value in values.items())

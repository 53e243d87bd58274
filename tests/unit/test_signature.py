"""Signatures: datatype mapping, inference from samples, validation before predict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aimass.contract.signature import Datatype, Signature, TensorSpec, infer_spec
from aimass.errors import AimassError, ErrorCode


@pytest.mark.parametrize("datatype", [d for d in Datatype if d is not Datatype.BYTES])
def test_numeric_datatypes_round_trip_through_numpy(datatype: Datatype) -> None:
    assert Datatype.from_numpy(datatype.numpy) is datatype


def test_text_is_bytes() -> None:
    assert infer_spec("text", ["a", "b"]) == TensorSpec(
        name="text", datatype=Datatype.BYTES, shape=(-1,)
    )


def test_sample_batch_dimension_becomes_variable() -> None:
    spec = infer_spec("x", np.zeros((3, 4), dtype=np.float32))
    assert spec.shape == (-1, 4) and spec.datatype is Datatype.FP32


SIG = Signature(inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 4)),))


def _invalid(inputs: dict[str, np.ndarray[Any, Any]]) -> str:
    with pytest.raises(AimassError) as err:
        SIG.validate_inputs(inputs)
    assert err.value.code is ErrorCode.INVALID_INPUT
    return err.value.message


def test_validation_names_the_wrong_shape() -> None:
    assert "shape [2, 3]" in _invalid({"x": np.zeros((2, 3), dtype=np.float32)})


def test_validation_names_unknown_and_missing_inputs() -> None:
    assert "missing input" in _invalid({})
    assert "unknown input 'y'" in _invalid(
        {"x": np.zeros((1, 4), np.float32), "y": np.zeros((1, 4), np.float32)}
    )


def test_validation_refuses_text_for_numbers_and_floats_for_ints() -> None:
    assert "got text" in _invalid({"x": np.array([["a"] * 4], dtype=object)})
    ints = Signature(inputs=(TensorSpec(name="i", datatype=Datatype.INT64, shape=(-1,)),))
    with pytest.raises(AimassError, match="floating point"):
        ints.validate_inputs({"i": np.zeros(2)})


def test_validation_converts_losslessly_compatible_numbers() -> None:
    checked = SIG.validate_inputs({"x": np.ones((2, 4), dtype=np.int64)})
    assert checked["x"].dtype == np.float32


def test_inputs_must_share_a_batch_size() -> None:
    two = Signature(
        inputs=(
            TensorSpec(name="a", datatype=Datatype.FP64, shape=(-1,)),
            TensorSpec(name="b", datatype=Datatype.FP64, shape=(-1,)),
        )
    )
    with pytest.raises(AimassError, match="batch size"):
        two.validate_inputs({"a": np.zeros(2), "b": np.zeros(3)})

"""Signatures: datatype mapping, inference from samples, validation before predict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aimass.contract.signature import (
    Datatype,
    Signature,
    TensorSpec,
    conversion_error,
    infer_spec,
)
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
    assert "expected FP32, got text (BYTES)" in _invalid({"x": np.array([["a"] * 4], dtype=object)})
    ints = Signature(inputs=(TensorSpec(name="i", datatype=Datatype.INT64, shape=(-1,)),))
    with pytest.raises(AimassError, match="input 'i': expected INT64, got FP64"):
        ints.validate_inputs({"i": np.zeros(2)})


def _spec(datatype: Datatype) -> Signature:
    return Signature(inputs=(TensorSpec(name="x", datatype=datatype, shape=(-1,)),))


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("float32", Datatype.FP64),
        ("float16", Datatype.FP32),
        ("int32", Datatype.INT64),
        ("int32", Datatype.FP64),
        ("int16", Datatype.FP32),
        ("uint8", Datatype.INT16),
        ("uint32", Datatype.UINT64),
        ("bool", Datatype.INT8),
    ],
)
def test_lossless_widening_is_converted(sent: str, expected: Datatype) -> None:
    checked = _spec(expected).validate_inputs({"x": np.ones(3, dtype=sent)})
    assert checked["x"].dtype == expected.numpy
    assert checked["x"].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("float64", Datatype.FP32),
        ("int64", Datatype.FP32),
        ("int64", Datatype.FP64),  # exact only up to 2**53
        ("uint64", Datatype.FP64),
        ("float32", Datatype.INT64),
        ("int64", Datatype.INT32),
        ("int32", Datatype.UINT32),
        ("uint64", Datatype.INT64),
        ("int32", Datatype.FP32),
        ("int8", Datatype.BOOL),
        ("float64", Datatype.FP16),
    ],
)
def test_casts_that_can_lose_information_are_refused_naming_both_datatypes(
    sent: str, expected: Datatype
) -> None:
    got = Datatype.from_numpy(np.dtype(sent)).value
    with pytest.raises(AimassError) as err:
        _spec(expected).validate_inputs({"x": np.ones(3, dtype=sent)})
    assert err.value.code is ErrorCode.INVALID_INPUT
    assert err.value.message == (
        f"input 'x': expected {expected.value}, got {got}; {got} to {expected.value} "
        f"can lose information, so send {expected.value}"
    )


def test_numbers_are_never_text() -> None:
    with pytest.raises(AimassError, match="input 'x': expected BYTES, got FP64; text and numbers"):
        _spec(Datatype.BYTES).validate_inputs({"x": np.ones(2)})


def test_conversion_rule_in_one_table() -> None:
    assert conversion_error(Datatype.FP32, Datatype.FP64) is None
    assert conversion_error(Datatype.FP64, Datatype.FP64) is None
    assert conversion_error(Datatype.INT64, Datatype.FP64) is not None


def test_in_process_values_convert_only_when_no_value_changes() -> None:
    sig = _spec(Datatype.FP64)
    assert sig.conform({"x": np.array([1, 2])})["x"].dtype == np.float64
    big = np.array([2**53 + 1])
    assert sig.conform({"x": big})["x"] is big  # left as it is, so validation refuses it
    f32 = _spec(Datatype.FP32)
    assert f32.conform({"x": np.array([0.5, np.nan])})["x"].dtype == np.float32
    assert f32.conform({"x": np.array([0.1])})["x"].dtype == np.float64
    ints = _spec(Datatype.INT64)
    assert ints.conform({"x": np.array([np.nan])})["x"].dtype == np.float64


def test_samples_with_gaps_make_nullable_specs() -> None:
    assert infer_spec("f", np.array([1.0, np.nan])).nullable
    assert not infer_spec("f", np.array([1.0, 2.0])).nullable
    text = infer_spec("t", np.array(["a", np.nan, None], dtype=object))
    assert (text.datatype, text.nullable) == (Datatype.BYTES, True)
    assert not infer_spec("t", ["a", "b"]).nullable
    with pytest.raises(AimassError, match="neither text nor numbers"):
        infer_spec("o", np.array(["a", 3], dtype=object))


def test_only_floats_and_text_may_be_nullable() -> None:
    assert TensorSpec(name="t", datatype=Datatype.BYTES, shape=(-1,), nullable=True).nullable
    with pytest.raises(ValueError, match="INT64 cannot hold missing values"):
        TensorSpec(name="i", datatype=Datatype.INT64, shape=(-1,), nullable=True)


def test_manifests_without_nullable_still_load() -> None:
    old = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}], "outputs": []}
    assert Signature.model_validate(old).inputs[0].nullable is False
    # ...and a signature without gaps is written as before, for older readers.
    assert Signature.model_validate(old).model_dump(mode="json") == old
    gaps = TensorSpec(name="t", datatype=Datatype.BYTES, shape=(-1,), nullable=True)
    assert gaps.model_dump()["nullable"] is True


def test_null_is_refused_for_inputs_that_may_not_be_missing() -> None:
    sig = Signature(
        inputs=(
            TensorSpec(name="a", datatype=Datatype.FP64, shape=(-1,), nullable=True),
            TensorSpec(name="b", datatype=Datatype.FP64, shape=(-1,)),
        )
    )
    arrays = {"a": np.array([np.nan]), "b": np.array([np.nan])}
    assert sig.validate_inputs(arrays, missing={"a"})
    with pytest.raises(AimassError, match="input 'b' has missing values") as err:
        sig.validate_inputs(arrays, missing={"a", "b"})
    assert err.value.details["field"] == "b"


def test_inputs_must_share_a_batch_size() -> None:
    two = Signature(
        inputs=(
            TensorSpec(name="a", datatype=Datatype.FP64, shape=(-1,)),
            TensorSpec(name="b", datatype=Datatype.FP64, shape=(-1,)),
        )
    )
    with pytest.raises(AimassError, match="batch size"):
        two.validate_inputs({"a": np.zeros(2), "b": np.zeros(3)})

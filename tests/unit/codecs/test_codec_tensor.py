from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from aimass.codecs import (
    decode_binary_tensor,
    decode_bytes_elements,
    decode_json_tensor,
    encode_binary_tensor,
    encode_bytes_elements,
    json_data,
    parse_datatype,
    parse_shape,
)
from aimass.contract.signature import Datatype
from aimass.errors import AimassError, ErrorCode


def _fails(match: str, fn: Any, *args: Any) -> AimassError:
    with pytest.raises(AimassError, match=match) as info:
        fn(*args)
    assert info.value.code is ErrorCode.INVALID_INPUT
    return info.value


@pytest.mark.parametrize("datatype", [d for d in Datatype if d is not Datatype.BYTES])
def test_every_numeric_datatype_decodes_flat_and_nested(datatype: Datatype) -> None:
    values = [[1, 0, 1], [0, 1, 1]]
    if datatype is Datatype.BOOL:
        values = [[bool(v) for v in row] for row in values]
    flat = [v for row in values for v in row]
    for data in (flat, values):
        array = decode_json_tensor("x", datatype, (2, 3), data)
        assert array.dtype == datatype.numpy
        assert array.shape == (2, 3)
        assert array.tolist() == [[datatype.numpy.type(v) for v in row] for row in values]


def test_fp16_and_float_data() -> None:
    array = decode_json_tensor("x", Datatype.FP16, (2,), [1.5, -0.25])
    assert array.dtype == np.float16
    assert array.tolist() == [1.5, -0.25]


def test_bytes_json_are_strings() -> None:
    array = decode_json_tensor("text", Datatype.BYTES, (2, 1), [["héllo"], ["world"]])
    assert array.dtype == object
    assert array.tolist() == [["héllo"], ["world"]]


def test_empty_tensor() -> None:
    array = decode_json_tensor("x", Datatype.INT32, (0, 4), [])
    assert array.shape == (0, 4)
    assert array.dtype == np.int32


def test_element_count_must_match_shape() -> None:
    error = _fails(
        r"input 'x': shape \[2, 4\] needs 8 elements, 'data' has 6",
        decode_json_tensor,
        "x",
        Datatype.FP32,
        (2, 4),
        [1.0] * 6,
    )
    assert error.details["field"] == "x"


@pytest.mark.parametrize(
    ("datatype", "data", "match"),
    [
        (Datatype.FP32, ["1.5"], "FP32 data must be numbers, found strings"),
        (Datatype.INT64, [1.5], "INT64 data must be integers, found floating point"),
        (Datatype.UINT8, [256], r"UINT8 data must lie in \[0, 255\]"),
        (Datatype.INT8, [-129], r"must lie in \[-128, 127\]"),
        (Datatype.BOOL, [1], "BOOL data must be true/false"),
        (Datatype.FP32, [[1.0, 2.0], [3.0]], "ragged"),
        (Datatype.FP32, [{"a": 1}], "must be numbers"),
        (Datatype.FP32, [None, "a"], "must be numbers, found strings"),
        (Datatype.INT64, [1, None], "INT64 data cannot hold null"),
        (Datatype.BOOL, [None], "BOOL data cannot hold null"),
        (Datatype.UINT64, [2**64], "UINT64 data must be integers in range"),
        (Datatype.BYTES, [1], "BYTES data must be strings or null, found 1"),
        (Datatype.BYTES, [["a"], ["b", "c"]], "BYTES data must be strings"),
    ],
)
def test_wrong_data_is_refused_naming_the_input(datatype: Datatype, data: Any, match: str) -> None:
    _fails(match, decode_json_tensor, "x", datatype, (len(data),), data)


def test_null_is_nan_in_floats_and_missing_in_bytes_and_is_reported() -> None:
    missing: set[str] = set()
    floats = decode_json_tensor("f", Datatype.FP32, (2, 2), [[1.5, None], [None, 2]], missing)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, [[1.5, np.nan], [np.nan, 2.0]])
    texts = decode_json_tensor("t", Datatype.BYTES, (3,), ["a", None, "b"], missing)
    assert texts[0] == "a" and texts[2] == "b"
    assert isinstance(texts[1], float) and math.isnan(texts[1])  # as pandas reads a gap
    decode_json_tensor("full", Datatype.FP64, (2,), [1.0, 2.0], missing)
    assert missing == {"f", "t"}


def test_uint64_beyond_int64() -> None:
    array = decode_json_tensor("x", Datatype.UINT64, (1,), [2**64 - 1])
    assert array.tolist() == [2**64 - 1]


def test_unknown_datatype_and_bad_shape() -> None:
    _fails(
        r"input 'x': unknown datatype 'FLOAT'; expected one of BOOL", parse_datatype, "x", "FLOAT"
    )
    _fails(r"input 'x': 'shape' must be a list of non-negative integers", parse_shape, "x", [2, -1])
    _fails("'shape' must be", parse_shape, "x", [True])
    _fails("'shape' must be", parse_shape, "x", "2")


def test_binary_numeric_round_trip_all_datatypes() -> None:
    for datatype in Datatype:
        if datatype is Datatype.BYTES:
            continue
        array = np.arange(6).reshape(2, 3).astype(datatype.numpy)
        raw = encode_binary_tensor("x", array, datatype)
        assert len(raw) == array.nbytes
        back = decode_binary_tensor("x", datatype, (2, 3), raw)
        np.testing.assert_array_equal(back, array)


def test_binary_byte_length_is_checked() -> None:
    _fails(
        r"binary_data_size is 12 bytes but shape \[2, 2\] of FP32 needs 16",
        decode_binary_tensor,
        "x",
        Datatype.FP32,
        (2, 2),
        b"\0" * 12,
    )


def test_bytes_elements_match_tritonclient() -> None:
    from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

    array = np.array([b"a", "héllo".encode(), b""], dtype=object)
    ours = encode_bytes_elements("t", array)
    theirs = serialize_byte_tensor(array)
    assert theirs is not None
    assert ours == theirs.item()
    assert decode_bytes_elements("t", ours, 3).tolist() == array.tolist()
    assert deserialize_bytes_tensor(ours).tolist() == array.tolist()
    assert encode_bytes_elements("t", np.array(["héllo"], dtype=object)) == theirs.item()[5:15]


@pytest.mark.parametrize(
    ("raw", "count", "match"),
    [
        (b"\x05\x00\x00\x00abc", 1, "declares 5 bytes but only 3 remain"),
        (b"\x01\x00\x00\x00a", 2, "ends after 1 of 2 elements"),
        (b"\x01\x00\x00\x00ab", 1, "1 bytes left over"),
    ],
)
def test_bytes_elements_are_checked(raw: bytes, count: int, match: str) -> None:
    _fails(match, decode_bytes_elements, "t", raw, count)


def test_json_data_is_flat() -> None:
    data = json_data("y", np.arange(4, dtype=np.float32).reshape(2, 2), Datatype.FP32)
    assert data.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert json_data("t", np.array([[b"a"], ["b"]], dtype=object), Datatype.BYTES) == ["a", "b"]


def test_non_utf8_bytes_cannot_go_as_json() -> None:
    with pytest.raises(AimassError, match="not UTF-8") as info:
        json_data("t", np.array([b"\xff"], dtype=object), Datatype.BYTES)
    assert info.value.code is ErrorCode.UNSUPPORTED

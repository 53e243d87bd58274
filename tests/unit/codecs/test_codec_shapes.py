"""A tensor's shape is a claim: checked against the data present and the element limit first.

Nothing is allocated from a declared shape before both checks pass, and the
element count is a Python integer, so no product wraps around.
"""

from __future__ import annotations

import struct
import tracemalloc
from typing import Any

import orjson
import pytest

from aimass.codecs import decode_infer_request
from aimass.codecs.limits import RequestLimits
from aimass.contract.reference import ModelRef
from aimass.errors import AimassError, ErrorCode

LIMITS = RequestLimits(max_tensor_elements=10, max_string_bytes=100)


def _binary(datatype: str, shape: list[int], raw: bytes) -> tuple[bytes, int]:
    entry = {"name": "x", "datatype": datatype, "shape": shape}
    header = orjson.dumps({"inputs": [{**entry, "parameters": {"binary_data_size": len(raw)}}]})
    return header + raw, len(header)


def _json(datatype: str, shape: list[int], data: Any) -> tuple[bytes, None]:
    document = {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    return orjson.dumps(document), None


def _refused(body: tuple[bytes, int | None], limits: RequestLimits | None = None) -> AimassError:
    with pytest.raises(AimassError) as info:
        decode_infer_request(*body, limits=limits)
    return info.value


def test_a_binary_bytes_shape_its_data_cannot_fill_allocates_nothing() -> None:
    body = _binary("BYTES", [200_000_000], struct.pack("<I", 0))
    tracemalloc.start()
    try:
        error = _refused(body, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code is ErrorCode.INVALID_INPUT
    assert error.message == (
        "input 'x': shape [200000000] has 200000000 elements, which need at least 800000000 "
        "bytes of binary BYTES data, but binary_data_size is 4"
    )
    assert peak < 1024 * 1024  # an object array of that shape would be 1.6 GB


@pytest.mark.parametrize("shape", [[2**40], [2**62], [2**31, 2**31, 4]], ids=str)
def test_shapes_past_any_memory_are_invalid_input_not_a_crash(shape: list[int]) -> None:
    count = 1
    for size in shape:
        count *= size
    assert f"has {count} elements" in _refused(_binary("BYTES", shape, bytes(4))).message
    assert f"needs {count * 4}" in _refused(_binary("FP32", shape, bytes(4))).message
    assert f"needs {count} elements" in _refused(_json("FP32", shape, [1.0])).message


@pytest.mark.parametrize("datatype", ["BYTES", "FP32"])
def test_an_empty_tensor_with_a_dimension_past_numpy_is_invalid_input(datatype: str) -> None:
    for body in (_binary(datatype, [0, 2**63], b""), _json(datatype, [0, 2**63], [])):
        error = _refused(body)
        assert error.code is ErrorCode.INVALID_INPUT
        assert error.message == "input 'x': shape [0, 9223372036854775808] has a dimension " + (
            "larger than numpy can hold"
        )


ELEVEN = {
    "binary BYTES": _binary("BYTES", [11], struct.pack("<I", 0) * 11),
    "binary FP32": _binary("FP32", [11], bytes(44)),
    "JSON FP32": _json("FP32", [11], [0.5] * 11),
    "JSON BYTES": _json("BYTES", [1, 11], [["a"] * 11]),
    "JSON with parameters": (
        orjson.dumps(
            {
                "parameters": {},
                "inputs": [{"name": "x", "datatype": "INT8", "shape": [11], "data": [1] * 11}],
            }
        ),
        None,
    ),
}


@pytest.mark.parametrize("body", ELEVEN.values(), ids=ELEVEN.keys())
def test_the_element_limit_is_checked_as_each_tensor_is_decoded(
    body: tuple[bytes, int | None],
) -> None:
    error = _refused(body, LIMITS)
    assert error.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert error.message == "input 'x' has 11 elements; the limit is 10"
    assert decode_infer_request(*body).inputs["x"].size == 11  # no limits, no refusal


def test_a_shape_that_does_not_fit_its_data_is_invalid_before_it_is_too_large() -> None:
    error = _refused(_binary("BYTES", [1_000], struct.pack("<I", 0) * 11), LIMITS)
    assert error.code is ErrorCode.INVALID_INPUT and "has 1000 elements" in error.message


def test_a_version_after_the_colon_must_be_ascii_digits() -> None:
    assert ModelRef.parse(f"iris:{10**20}") == ModelRef("iris", 10**20)  # too large: not found
    for text in ("iris:²", "iris:١٢", "iris:-1", "iris:"):
        with pytest.raises(AimassError, match="must be a number") as info:
            ModelRef.parse(text)
        assert info.value.code is ErrorCode.INVALID_INPUT

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from aimass.codecs import decode_infer_request, encode_infer_response, parse_header_length
from aimass.contract.request import InferRequest, RequestedOutput
from aimass.errors import AimassError, ErrorCode


def _json(document: Any) -> bytes:
    return orjson.dumps(document)


def _binary(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(header)
    return head + b"".join(chunks), len(head)


def _invalid(body: bytes, match: str, header_length: int | None = None) -> None:
    with pytest.raises(AimassError, match=match) as info:
        decode_infer_request(body, header_length)
    assert info.value.code is ErrorCode.INVALID_INPUT


def test_json_request() -> None:
    request = decode_infer_request(
        _json(
            {
                "id": "r1",
                "parameters": {"binary_data_output": True},
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[1, 2]]},
                    {"name": "t", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
                ],
                "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
            }
        )
    )
    assert request.id == "r1"
    assert request.binary_output is True
    assert request.outputs == (RequestedOutput("y", False),)
    assert request.inputs["x"].dtype == np.float32
    assert request.inputs["t"].tolist() == ["hi"]


def test_plain_requests_decode_as_the_general_path_does() -> None:
    tensors = [
        {"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [1, 2.5, 3, 4]},
        {"name": "n", "datatype": "INT32", "shape": [2], "data": [[7], [8]]},
    ]
    plain = decode_infer_request(_json({"id": "p", "inputs": tensors}))
    # Empty parameters make no difference but send the request down the general path.
    general = decode_infer_request(_json({"id": "p", "parameters": {}, "inputs": tensors}))
    assert (plain.id, plain.outputs, plain.binary_output) == ("p", None, False)
    assert plain.inputs.keys() == general.inputs.keys()
    for name, array in plain.inputs.items():
        assert array.dtype == general.inputs[name].dtype
        np.testing.assert_array_equal(array, general.inputs[name])
    _invalid(_json({"inputs": [{**tensors[0], "shape": [2, -2]}]}), "non-negative integers")
    _invalid(_json({"inputs": [{**tensors[0], "data": ["a", "b", "c", "d"]}]}), "found strings")


def test_binary_request_like_tritonclient() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    texts = b"\x02\x00\x00\x00hi"
    body, length = _binary(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": x.nbytes},
                },
                {"name": "n", "datatype": "INT64", "shape": [1], "data": [7]},
                {
                    "name": "t",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(texts)},
                },
            ]
        },
        x.tobytes(),
        texts,
    )
    request = decode_infer_request(body, length)
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert request.inputs["x"].flags.writeable
    assert request.inputs["t"].tolist() == [b"hi"]
    assert request.inputs["n"].tolist() == [7]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{nope", "request body is not valid JSON: "),
        (b"[1]", "request body must be a JSON object, got list"),
        (b"{}", "'inputs' must be a non-empty list"),
        (b'{"inputs": [3]}', r"inputs\[0\] must be an object"),
        (b'{"inputs": [{"shape": [1]}]}', r"inputs\[0\]: 'name' must be a non-empty string"),
        (b'{"id": 5, "inputs": []}', "'id' must be a string"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}',
            "input 'x': has neither 'data' nor parameters.binary_data_size",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},'
            b'{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
            "input 'x' appears more than once",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "F32", "shape": [1], "data": [1]}]}',
            "input 'x': unknown datatype 'F32'",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],'
            b'"outputs": [{"nome": "y"}]}',
            r"outputs\[0\] must be an object with a string 'name'",
        ),
        (
            b'{"parameters": {"binary_data_output": 1},'
            b'"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
            "parameter 'binary_data_output' must be true or false",
        ),
    ],
)
def test_malformed_requests(body: bytes, match: str) -> None:
    _invalid(body, match)


def test_binary_sizes_must_add_up() -> None:
    header = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
        ]
    }
    body, length = _binary(header, b"\0" * 4)
    _invalid(body, "input 'x': binary_data_size is 8 bytes but only 4 bytes", length)
    body, length = _binary(header, b"\0" * 12)
    _invalid(body, "4 bytes of binary data follow the last input", length)
    header["inputs"][0]["shape"] = [3]
    body, length = _binary(header, b"\0" * 8)
    _invalid(body, r"binary_data_size is 8 bytes but shape \[3\] of FP32 needs 12", length)


def test_header_length_is_checked() -> None:
    assert parse_header_length(None, 10) is None
    assert parse_header_length("4", 10) == 4
    for bad in ("x", "-1", "11"):
        with pytest.raises(AimassError, match="Inference-Header-Content-Length"):
            parse_header_length(bad, 10)


def test_classification_extension_is_unsupported() -> None:
    body = _json(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "y", "parameters": {"classification": 2}}],
        }
    )
    with pytest.raises(AimassError) as info:
        decode_infer_request(body)
    assert info.value.code is ErrorCode.UNSUPPORTED


def _request(**kwargs: Any) -> InferRequest:
    return InferRequest("m", {}, **kwargs)


def test_json_response() -> None:
    outputs = {
        "y": np.array([[0.5, 1.5]], dtype=np.float32),
        "label": np.array(["a"], dtype=object),
    }
    encoded = encode_infer_response(_request(id="r1"), "iris", 2, outputs)
    assert encoded.header_length is None
    assert orjson.loads(encoded.body) == {
        "id": "r1",
        "model_name": "iris",
        "model_version": "2",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]},
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["a"]},
        ],
    }


def test_binary_response_in_request_order() -> None:
    outputs = {"a": np.array([1, 2], dtype=np.int64), "b": np.array([b"xy"], dtype=object)}
    request = _request(outputs=(RequestedOutput("b", True), RequestedOutput("a", False)))
    encoded = encode_infer_response(request, "m", 1, outputs)
    assert encoded.header_length is not None
    header = orjson.loads(encoded.body[: encoded.header_length])
    assert [o["name"] for o in header["outputs"]] == ["b", "a"]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 6}
    assert header["outputs"][1]["data"] == [1, 2]
    assert encoded.body[encoded.header_length :] == b"\x02\x00\x00\x00xy"


def test_binary_data_output_applies_to_all() -> None:
    outputs = {"a": np.array([1.0], dtype=np.float16)}
    encoded = encode_infer_response(_request(binary_output=True), "m", 1, outputs)
    assert encoded.header_length is not None
    assert encoded.body[encoded.header_length :] == np.array([1.0], dtype="<f2").tobytes()


def test_unknown_requested_output() -> None:
    with pytest.raises(AimassError, match="unknown output 'z'"):
        encode_infer_response(
            _request(outputs=(RequestedOutput("z", False),)), "m", 1, {"a": np.zeros(1)}
        )


def test_requests_record_the_inputs_that_hold_nulls() -> None:
    tensors = [
        {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, None]},
        {"name": "n", "datatype": "INT64", "shape": [2], "data": [1, 2]},
    ]
    plain = decode_infer_request(_json({"inputs": tensors}))
    general = decode_infer_request(_json({"inputs": tensors, "parameters": {}}))
    for request in (plain, general):
        assert request.missing == {"x"}
        assert np.isnan(request.inputs["x"][1])
    text = [{"name": "t", "datatype": "BYTES", "shape": [2], "data": ["a", None]}]
    assert decode_infer_request(_json({"inputs": text})).missing == {"t"}
    assert decode_infer_request(_json({"inputs": tensors[1:]})).missing == frozenset()


def _texts(*elements: bytes) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def test_binary_bytes_list_their_missing_positions() -> None:
    raw = _texts(b"a", b"", b"c")
    header: dict[str, Any] = {
        "inputs": [
            {
                "name": "t",
                "datatype": "BYTES",
                "shape": [3, 1],
                "parameters": {"binary_data_size": len(raw), "missing": [1]},
            }
        ]
    }
    request = decode_infer_request(*_binary(header, raw))
    assert request.missing == {"t"}
    values = request.inputs["t"].ravel().tolist()
    assert values[0] == b"a" and values[2] == b"c" and np.isnan(values[1])
    header["inputs"][0]["parameters"]["missing"] = []
    assert decode_infer_request(*_binary(header, raw)).missing == frozenset()


@pytest.mark.parametrize(
    ("tensor", "raw", "match"),
    [
        (
            {"datatype": "BYTES", "shape": [1], "parameters": {"missing": [3]}},
            _texts(b""),
            r"parameters.missing must be a list of element positions \(flat, row-major\) below 1",
        ),
        (
            {"datatype": "FP64", "shape": [1], "parameters": {"missing": [0]}},
            b"\0" * 8,
            "a binary FP64 tensor sends a missing value as NaN",
        ),
        (
            {"datatype": "INT32", "shape": [1], "parameters": {"missing": [0]}},
            b"\0" * 4,
            "a binary INT32 tensor cannot hold missing values",
        ),
    ],
)
def test_binary_missing_positions_are_checked(
    tensor: dict[str, Any], raw: bytes, match: str
) -> None:
    tensor["parameters"]["binary_data_size"] = len(raw)
    body, length = _binary({"inputs": [{"name": "t", **tensor}]}, raw)
    _invalid(body, match, length)


def test_json_tensors_say_missing_with_null_not_a_parameter() -> None:
    body = _json(
        {
            "inputs": [
                {
                    "name": "t",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [""],
                    "parameters": {"missing": [0]},
                }
            ]
        }
    )
    _invalid(body, "in JSON data a missing value is null")

"""The request limits' shortcut: a body no larger than both limits cannot break either.

The infer endpoint skips looking at the tensors of such a body, so these
requests pack as many elements and string bytes into as few body bytes as the
protocol allows, and check that the limits set to the body's own length pass.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from aimass.codecs import decode_infer_request
from aimass.codecs.limits import RequestLimits
from aimass.errors import AimassError


def _json(*inputs: dict[str, Any]) -> tuple[bytes, None]:
    return orjson.dumps({"inputs": list(inputs)}), None


def _binary(datatype: str, shape: list[int], raw: bytes) -> tuple[bytes, int]:
    entry = {"name": "x", "datatype": datatype, "shape": shape}
    header = orjson.dumps({"inputs": [{**entry, "parameters": {"binary_data_size": len(raw)}}]})
    return header + raw, len(header)


def _bytes_elements(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


DENSE = {
    "one-digit numbers": _json({"name": "x", "datatype": "INT8", "shape": [64], "data": [0] * 64}),
    "a lone scalar": _json({"name": "x", "datatype": "FP32", "shape": [1], "data": 0}),
    "empty strings": _json({"name": "x", "datatype": "BYTES", "shape": [64], "data": [""] * 64}),
    "escaped text": (
        b'{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["'
        + b"\\u00e9\\ud83d\\ude00" * 9
        + b'"]}]}',
        None,
    ),
    "multibyte text": _json({"name": "x", "datatype": "BYTES", "shape": [1], "data": ["é😀" * 9]}),
    "binary BOOL": _binary("BOOL", [256], bytes(256)),
    "binary empty BYTES": _binary("BYTES", [64], _bytes_elements(*[b""] * 64)),
    "binary BYTES": _binary("BYTES", [1], _bytes_elements(b"\xff" * 200)),
}


@pytest.mark.parametrize("body", DENSE.values(), ids=DENSE.keys())
def test_a_body_within_both_limits_breaks_neither(body: tuple[bytes, int | None]) -> None:
    raw, header_length = body
    limits = RequestLimits(max_tensor_elements=len(raw), max_string_bytes=len(raw))
    inputs = decode_infer_request(raw, header_length, limits=limits).inputs  # counts pass
    assert limits.body_bytes_always_within == len(raw)
    limits.check_strings(inputs)  # no PAYLOAD_TOO_LARGE


def test_the_shortcut_is_the_string_limit() -> None:
    # Element counts are checked as tensors are decoded; only strings need the look.
    limits = RequestLimits(max_tensor_elements=1, max_string_bytes=4)
    assert limits.body_bytes_always_within == 4
    raw, _ = DENSE["multibyte text"]
    with pytest.raises(AimassError, match="bytes long; the limit is 4"):
        limits.check_strings(decode_infer_request(raw, limits=limits).inputs)

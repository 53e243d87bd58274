"""Encode an Open Inference Protocol inference response, JSON or JSON-plus-binary.

An output goes as raw bytes when its request entry says
``parameters.binary_data`` or, unlisted, when the request says
``parameters.binary_data_output``; its JSON entry then carries
``parameters.binary_data_size`` and the bytes follow the JSON header in output
order. ``header_length`` is what the ``Inference-Header-Content-Length``
response header must say; it is ``None`` for a plain JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from aimass.codecs.tensor import encode_binary_tensor, json_data, tensor_datatype
from aimass.contract.request import InferRequest
from aimass.errors import AimassError, ErrorCode

__all__ = ["EncodedResponse", "encode_infer_response"]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)  # not frozen: one per request, and frozen fields cost a call each
class EncodedResponse:
    """A response body and, when it carries binary tensors, its JSON header's length."""

    body: bytes
    header_length: int | None = None


def encode_infer_response(
    request: InferRequest,
    model_name: str,
    model_version: int | str,
    outputs: Mapping[str, np.ndarray[Any, Any]],
) -> EncodedResponse:
    """Encode the outputs the request asked for (all, if it named none)."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    if request.outputs is None:
        binary = request.binary_output
        for name, array in outputs.items():
            entries.append(_entry(name, array, binary, chunks))
    else:
        for wanted in request.outputs:
            found = outputs.get(wanted.name)
            if found is None:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"unknown output '{wanted.name}'; the model returns {sorted(outputs)}",
                    field=wanted.name,
                )
            entries.append(_entry(wanted.name, found, wanted.binary, chunks))
    document: dict[str, Any] = {
        "model_name": model_name,
        "model_version": str(model_version),
        "outputs": entries,
    }
    if request.id is not None:
        document["id"] = request.id
    header = orjson.dumps(document, option=_NUMPY)
    if not chunks:
        return EncodedResponse(header)
    return EncodedResponse(b"".join([header, *chunks]), len(header))


def _entry(
    name: str, array: np.ndarray[Any, Any], binary: bool, chunks: list[bytes]
) -> dict[str, Any]:
    """One output's JSON entry; its raw bytes go to ``chunks`` when ``binary``."""
    datatype = tensor_datatype(name, array)
    # orjson writes the StrEnum member and the shape tuple as a string and a list.
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": array.shape}
    if binary:
        raw = encode_binary_tensor(name, array, datatype)
        entry["parameters"] = {"binary_data_size": len(raw)}
        chunks.append(raw)
    else:
        entry["data"] = json_data(name, array, datatype)
    return entry

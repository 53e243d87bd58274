"""Decode an Open Inference Protocol inference request, JSON or JSON-plus-binary.

The body is JSON unless the ``Inference-Header-Content-Length`` header is
present, whatever the Content-Type says (tritonclient sends none or
``application/octet-stream``). With the header, the first that many bytes are
the JSON header and the rest are the raw tensors, one after another, in the
order of the inputs that carry ``parameters.binary_data_size``.

A missing value is ``null`` in JSON data. Binary data has no null, so a
binary BYTES input lists its missing elements' positions (flat, row-major) in
``parameters.missing`` and sends them as empty strings; a binary floating
input sends NaN. The request records which inputs hold missing values, and the
engine accepts them only where the model's signature says they may be missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from aimass.codecs.limits import RequestLimits
from aimass.codecs.tensor import (
    NUMERIC_DATATYPES,
    decode_binary_tensor,
    decode_json_tensor,
    parse_datatype,
    parse_shape,
)
from aimass.contract.request import InferRequest, RequestedOutput
from aimass.contract.signature import MISSING, Datatype
from aimass.errors import AimassError, ErrorCode

__all__ = ["HEADER_LENGTH", "decode_infer_request", "parse_header_length", "parse_json_object"]

HEADER_LENGTH = "inference-header-content-length"
"""The (lower-case) HTTP header that announces binary tensor data and the JSON header's size."""


def _invalid(message: str, **details: Any) -> AimassError:
    return AimassError(ErrorCode.INVALID_INPUT, message, **details)


def parse_json_object(body: bytes | bytearray | memoryview, what: str = "request body") -> Any:
    """Parse ``body`` as a JSON object; INVALID_INPUT saying where it is malformed."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def parse_header_length(value: str | None, body_length: int) -> int | None:
    """The ``Inference-Header-Content-Length`` value, checked against the body's size."""
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) > body_length:
        raise _invalid(
            f"Inference-Header-Content-Length must be an integer no larger than the body "
            f"({body_length} bytes), got {value!r}",
            field="Inference-Header-Content-Length",
        )
    return int(value)


def _parameters(container: dict[str, Any], where: str) -> dict[str, Any]:
    value = container.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{where}'parameters' must be an object", field="parameters")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise _invalid(f"{where}parameter '{key}' must be true or false", field=key)
    return value


def decode_infer_request(
    body: bytes | bytearray | memoryview,
    header_length: int | None = None,
    *,
    model: str = "",
    version: int | None = None,
    limits: RequestLimits | None = None,
) -> InferRequest:
    """Decode a request body into the request for ``model`` (and ``version``) the path names.

    ``header_length`` comes from ``Inference-Header-Content-Length``. Each
    tensor's element count is checked against ``limits`` as it is decoded,
    before anything is allocated from its shape.
    """
    if header_length is None:
        document = parse_json_object(body)
        plain = _plain_request(document, model, version, limits)
        if plain is not None:
            return plain
        tail = bytearray()
    else:
        view = memoryview(body)
        document = parse_json_object(view[:header_length], "the JSON header")
        # Writable copy so runtimes (torch.from_numpy) never see a read-only array.
        tail = bytearray(view[header_length:])
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _invalid("'id' must be a string", field="id")
    parameters = _parameters(document, "")
    outputs = document.get("outputs")
    missing: set[str] = set()
    return InferRequest(
        model,
        _decode_inputs(document.get("inputs"), tail, missing, limits),
        version,
        outputs=None if outputs is None else _decode_outputs(outputs),
        parameters=parameters,
        id=request_id,
        binary_output=bool(parameters) and _flag(parameters, "binary_data_output", ""),
        missing=frozenset(missing),
    )


_PLAIN_TENSOR = frozenset(("name", "datatype", "shape", "data"))


def _plain_request(
    document: dict[str, Any], model: str, version: int | None, limits: RequestLimits | None
) -> InferRequest | None:
    """The common request, decoded with the fewest checks; None for anything else.

    Plain means an optional string ``id`` and ``inputs``, each exactly
    ``name``, a numeric ``datatype``, ``shape`` and JSON ``data``. That is
    nearly every request and the checks below are all it needs; anything
    else (parameters, requested outputs, BYTES, binary data, every mistake)
    goes down the general path, which also words the errors.
    """
    request_id = document.get("id")
    if len(document) != (1 if request_id is None else 2) or (
        request_id is not None and type(request_id) is not str
    ):
        return None
    items = document.get("inputs")
    if type(items) is not list or not items:
        return None
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    missing: set[str] = set()
    for item in items:
        if type(item) is not dict or item.keys() != _PLAIN_TENSOR:
            return None
        name, datatype = item["name"], item["datatype"]
        if type(name) is not str or not name or name in inputs:
            return None
        numeric = NUMERIC_DATATYPES.get(datatype) if type(datatype) is str else None
        if numeric is None:
            return None
        # From here on a mistake gets the error the general path would give.
        shape = parse_shape(name, item["shape"])
        inputs[name] = decode_json_tensor(name, numeric, shape, item["data"], missing, limits)
    if missing:
        return InferRequest(model, inputs, version, id=request_id, missing=frozenset(missing))
    return InferRequest(model, inputs, version, id=request_id)


def _decode_inputs(
    items: Any, tail: bytearray, missing: set[str], limits: RequestLimits | None
) -> dict[str, np.ndarray[Any, Any]]:
    if not isinstance(items, list) or not items:
        raise _invalid("'inputs' must be a non-empty list of tensors", field="inputs")
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    offset = 0
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise _invalid(f"inputs[{position}] must be an object", field="inputs")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(f"inputs[{position}]: 'name' must be a non-empty string", field="inputs")
        if name in inputs:
            raise _invalid(f"input '{name}' appears more than once", field=name)
        datatype = parse_datatype(name, item.get("datatype"))
        shape = parse_shape(name, item.get("shape"))
        parameters = (
            {} if item.get("parameters") is None else _parameters(item, f"input '{name}': ")
        )
        size = parameters.get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise _invalid(
                    f"input '{name}': has neither 'data' nor parameters.binary_data_size",
                    field=name,
                )
            if "missing" in parameters:
                raise _invalid(
                    f"input '{name}': parameters.missing is for binary data; "
                    "in JSON data a missing value is null",
                    field=name,
                )
            inputs[name] = decode_json_tensor(name, datatype, shape, item["data"], missing, limits)
            continue
        if "data" in item:
            raise _invalid(
                f"input '{name}': has both 'data' and parameters.binary_data_size", field=name
            )
        if type(size) is not int or size < 0:
            raise _invalid(
                f"input '{name}': binary_data_size must be a non-negative integer", field=name
            )
        if offset + size > len(tail):
            raise _invalid(
                f"input '{name}': binary_data_size is {size} bytes but only "
                f"{len(tail) - offset} bytes of binary data remain",
                field=name,
            )
        chunk = memoryview(tail)[offset : offset + size]
        inputs[name] = decode_binary_tensor(name, datatype, shape, chunk, limits)
        offset += size
        if "missing" in parameters and _mark_missing(
            name, datatype, inputs[name], parameters["missing"]
        ):
            missing.add(name)
    if offset != len(tail):
        raise _invalid(
            f"{len(tail) - offset} bytes of binary data follow the last input's "
            f"binary_data_size; the sizes must add up to the body after the JSON header"
        )
    return inputs


def _mark_missing(
    name: str, datatype: Datatype, array: np.ndarray[Any, Any], positions: Any
) -> bool:
    """Set the elements of a binary BYTES tensor that ``parameters.missing`` lists to MISSING.

    Returns whether it listed any.
    """
    if datatype is not Datatype.BYTES:
        raise _invalid(
            f"input '{name}': parameters.missing is for BYTES tensors; a binary "
            f"{datatype.value} tensor "
            + (
                "sends a missing value as NaN"
                if datatype.numpy.kind == "f"
                else "cannot hold missing values"
            ),
            field=name,
        )
    flat = array.reshape(-1)
    if type(positions) is not list or not all(
        type(p) is int and 0 <= p < flat.size for p in positions
    ):
        raise _invalid(
            f"input '{name}': parameters.missing must be a list of element positions "
            f"(flat, row-major) below {flat.size}",
            field=name,
        )
    flat[positions] = MISSING
    return bool(positions)


def _decode_outputs(items: Any) -> tuple[RequestedOutput, ...]:
    if not isinstance(items, list):
        raise _invalid("'outputs' must be a list", field="outputs")
    requested: list[RequestedOutput] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _invalid(
                f"outputs[{position}] must be an object with a string 'name'", field="outputs"
            )
        name = item["name"]
        parameters = _parameters(item, f"output '{name}': ")
        if "classification" in parameters:
            raise AimassError(
                ErrorCode.UNSUPPORTED,
                f"output '{name}': the classification extension is not supported",
                field=name,
            )
        requested.append(RequestedOutput(name, _flag(parameters, "binary_data", f"{name}: ")))
    return tuple(requested)

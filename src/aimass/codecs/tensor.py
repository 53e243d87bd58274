"""One Open Inference Protocol tensor <-> one numpy array, as JSON data or raw bytes.

JSON data may be flat or nested (row-major either way); BYTES elements are
JSON strings. A JSON ``null`` is a missing value: NaN in a floating tensor,
:data:`~aimass.contract.signature.MISSING` in a BYTES one, and refused in an
integer or BOOL tensor, which have no missing value. Raw bytes follow Triton's
binary tensor data extension: numeric tensors are little-endian and
contiguous, and each BYTES element is a 4-byte little-endian length followed
by that many bytes. Numeric conversions are done by numpy in C, never element
by element in Python; only BYTES tensors, whose elements are Python objects
anyway, are walked one element at a time.

Every failure is an INVALID_INPUT naming the tensor and what was expected.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from aimass.codecs.limits import RequestLimits
from aimass.contract.signature import MISSING, Datatype
from aimass.errors import AimassError, ErrorCode

__all__ = [
    "NUMERIC_DATATYPES",
    "decode_binary_tensor",
    "decode_bytes_elements",
    "decode_json_tensor",
    "encode_binary_tensor",
    "encode_bytes_elements",
    "json_data",
    "parse_datatype",
    "parse_shape",
    "tensor_datatype",
]

_LENGTH = struct.Struct("<I")
_DATATYPES = ", ".join(d.value for d in Datatype)
_BY_NAME: dict[str, Datatype] = {d.value: d for d in Datatype}
NUMERIC_DATATYPES: dict[str, Datatype] = {
    name: d for name, d in _BY_NAME.items() if d is not Datatype.BYTES
}
"""Every datatype but BYTES, by its name."""
# Per numpy kind of the target: what JSON data may hold, and how to say so.
_ALLOWED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_EXPECTED = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}
_FOUND = {"U": "strings", "f": "floating point numbers", "b": "booleans"}
# Looked up once per tensor on the hot path, where reading an enum member, a
# dtype's kind or a property costs more than the dict lookup that replaces them.
_BYTES = Datatype.BYTES
_NULL = np.array(None, dtype=object)  # what JSON null compares equal to, element-wise
_TARGETS: dict[Datatype, tuple[np.dtype[Any], str, str]] = {
    d: (d.numpy, d.numpy.kind, _ALLOWED_KINDS[d.numpy.kind]) for d in NUMERIC_DATATYPES.values()
}


def _invalid(kind: str, name: str, problem: str) -> AimassError:
    return AimassError(ErrorCode.INVALID_INPUT, f"{kind} '{name}': {problem}", field=name)


def parse_datatype(name: str, value: Any, *, kind: str = "input") -> Datatype:
    """The datatype a request names; INVALID_INPUT listing the valid ones otherwise."""
    found = _BY_NAME.get(value) if type(value) is str else None
    if found is None:
        raise _invalid(kind, name, f"unknown datatype {value!r}; expected one of {_DATATYPES}")
    return found


def parse_shape(name: str, value: Any, *, kind: str = "input") -> tuple[int, ...]:
    """A request's shape: a list of non-negative integers (booleans are not integers)."""
    if type(value) is list:
        for size in value:
            if type(size) is not int or size < 0:
                break
        else:
            return tuple(value)
    raise _invalid(kind, name, f"'shape' must be a list of non-negative integers, got {value!r}")


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def decode_json_tensor(
    name: str,
    datatype: Datatype,
    shape: tuple[int, ...],
    data: Any,
    missing: set[str] | None = None,
    limits: RequestLimits | None = None,
) -> np.ndarray[Any, Any]:
    """A numpy array from a tensor's JSON ``data`` (flat or nested), shaped ``shape``.

    ``name`` is added to ``missing`` when the data holds a ``null``. Nothing
    is allocated from the shape: the array holds the data orjson has parsed
    already, then the shape must fit it, then its count must fit ``limits``.
    """
    if type(data) is not list:
        data = [data]  # a lone scalar is a one-element tensor
    if datatype is _BYTES:
        array, gaps = _bytes_from_json(name, data)
    else:
        array, gaps = _numbers_from_json(name, datatype, data)
    if gaps and missing is not None:
        missing.add(name)
    shaped = _shaped(name, array, shape)
    if limits is not None:
        limits.check_count(name, shaped.size)
    return shaped


def _shaped(name: str, array: np.ndarray[Any, Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    try:
        return array.reshape(shape)
    except ValueError:
        count = _count(shape)
        problem = (
            f"shape {list(shape)} needs {count} elements, 'data' has {array.size}"
            if count != array.size
            # an empty tensor whose other dimensions are past what numpy indexes
            else f"shape {list(shape)} has a dimension larger than numpy can hold"
        )
        raise _invalid("input", name, problem) from None


def _bytes_from_json(name: str, data: list[Any]) -> tuple[np.ndarray[Any, Any], bool]:
    try:
        array = np.array(data, dtype=object)
    except ValueError:
        raise _invalid("input", name, "'data' is a ragged nested list") from None
    flat = array.reshape(-1)
    gaps = False
    for index, value in enumerate(flat):
        if type(value) is not str:
            if value is None:
                flat[index] = MISSING
                gaps = True
                continue
            what = "a nested list of uneven length" if isinstance(value, list) else repr(value)
            raise _invalid("input", name, f"BYTES data must be strings or null, found {what}")
    return array, gaps


def _numbers_from_json(
    name: str, datatype: Datatype, data: list[Any]
) -> tuple[np.ndarray[Any, Any], bool]:
    target, target_kind, _ = _TARGETS[datatype]
    try:
        array = np.array(data)
    except (ValueError, TypeError):
        raise _invalid("input", name, "'data' is a ragged nested list") from None
    kind = array.dtype.kind
    if kind == "f" and target_kind == "f":
        # the common case: numbers for a float tensor
        return array.astype(target, copy=False), False
    if array.size == 0:
        return array.astype(target), False
    if kind == "O":
        gaps = np.equal(array, _NULL)
        if gaps.any():
            return _with_gaps(name, datatype, array, gaps), True
    return _numbers(name, datatype, data, array), False


def _with_gaps(
    name: str, datatype: Datatype, array: np.ndarray[Any, Any], gaps: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Numbers with nulls among them: NaN where they were, for floating datatypes only."""
    if _TARGETS[datatype][1] != "f":
        raise _invalid(
            "input",
            name,
            f"{datatype.value} data cannot hold null: integers and booleans have no missing "
            "value (only FP16, FP32, FP64 and BYTES inputs may have missing values)",
        )
    # tolist() and np.array, both in C, let numpy find the other values' kind again.
    values = np.where(gaps, 0.0, array).tolist()
    numbers = _numbers(name, datatype, values, np.array(values))
    numbers[gaps] = np.nan
    return numbers


def _numbers(
    name: str, datatype: Datatype, data: list[Any], array: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    target, target_kind, allowed = _TARGETS[datatype]
    kind = array.dtype.kind
    if kind == "O" and target_kind in "iu":
        # Integers beyond int64 land in an object array; numpy checks the range itself.
        try:
            return np.array(data, dtype=target)
        except (OverflowError, ValueError, TypeError):
            raise _invalid(
                "input", name, f"{datatype.value} data must be {_EXPECTED[target_kind]} in range"
            ) from None
    if kind not in allowed:
        found = _FOUND.get(kind, "values that are not numbers")
        raise _invalid(
            "input", name, f"{datatype.value} data must be {_EXPECTED[target_kind]}, found {found}"
        )
    if target_kind in "iu":
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise _invalid(
                "input", name, f"{datatype.value} data must lie in [{info.min}, {info.max}]"
            )
    return array.astype(target, copy=False)


def decode_binary_tensor(
    name: str,
    datatype: Datatype,
    shape: tuple[int, ...],
    raw: bytes | bytearray | memoryview,
    limits: RequestLimits | None = None,
) -> np.ndarray[Any, Any]:
    """A numpy array over one tensor's raw bytes (numeric tensors share the buffer).

    The shape is checked against the bytes present, then its element count
    against ``limits``, before anything is allocated from it: a shape is a
    claim, and ``[2**40]`` over four bytes must cost nothing to refuse.
    """
    # A Python int: numpy's product of a shape wraps around at 2**63.
    count = _count(shape)
    if datatype is Datatype.BYTES:
        least = count * _LENGTH.size  # every element carries its 4-byte length
        if least > len(raw):
            raise _invalid(
                "input",
                name,
                f"shape {list(shape)} has {count} elements, which need at least {least} "
                f"bytes of binary BYTES data, but binary_data_size is {len(raw)}",
            )
        if limits is not None:
            limits.check_count(name, count)
        return _shaped(name, decode_bytes_elements(name, raw, count), shape)
    dtype = datatype.numpy.newbyteorder("<")
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise _invalid(
            "input",
            name,
            f"binary_data_size is {len(raw)} bytes but shape {list(shape)} of "
            f"{datatype.value} needs {needed}",
        )
    if limits is not None:
        limits.check_count(name, count)
    return _shaped(name, np.frombuffer(raw, dtype=dtype, count=count), shape)


def decode_bytes_elements(
    name: str, raw: bytes | bytearray | memoryview, count: int
) -> np.ndarray[Any, Any]:
    """``count`` length-prefixed elements as a 1-D object array of ``bytes``."""
    view = memoryview(raw)
    out = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise _invalid(
                "input", name, f"binary BYTES data ends after {index} of {count} elements"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise _invalid(
                "input",
                name,
                f"BYTES element {index} declares {length} bytes but only "
                f"{len(view) - offset} remain",
            )
        out[index] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise _invalid(
            "input",
            name,
            f"binary BYTES data has {len(view) - offset} bytes left over after {count} elements",
        )
    return out


# Looked up once per output on the hot path; numpy dtypes hash by value.
_BY_DTYPE: dict[np.dtype[Any], Datatype] = {}


def tensor_datatype(name: str, array: np.ndarray[Any, Any]) -> Datatype:
    """The OIP datatype of an output array."""
    found = _BY_DTYPE.get(array.dtype)
    if found is not None:
        return found
    try:
        found = _BY_DTYPE[array.dtype] = Datatype.from_numpy(array.dtype)
        return found
    except AimassError:
        raise AimassError(
            ErrorCode.INTERNAL, f"output '{name}' has dtype {array.dtype}, which OIP cannot carry"
        ) from None


def _element_bytes(name: str, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytearray | memoryview | np.bytes_):
        return bytes(value)
    raise AimassError(
        ErrorCode.INTERNAL, f"output '{name}' holds a {type(value).__name__}, not text or bytes"
    )


def encode_bytes_elements(name: str, array: np.ndarray[Any, Any]) -> bytes:
    """The length-prefixed serialisation of a BYTES tensor, row-major."""
    parts: list[bytes] = []
    for value in array.reshape(-1):
        item = _element_bytes(name, value)
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def encode_binary_tensor(name: str, array: np.ndarray[Any, Any], datatype: Datatype) -> bytes:
    """The raw bytes of an output tensor (little-endian, row-major)."""
    if datatype is Datatype.BYTES:
        return encode_bytes_elements(name, array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def json_data(name: str, array: np.ndarray[Any, Any], datatype: Datatype) -> Any:
    """The flat JSON ``data`` of an output: a numpy array orjson serialises, or strings."""
    if datatype is _BYTES:
        return [_element_text(name, v) for v in array.reshape(-1)]
    # orjson serialises native-endian, C-contiguous numpy arrays without a Python
    # loop; ravel() is contiguous, copying only when it must.
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array.ravel()


def _element_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return _element_bytes(name, value).decode("utf-8")
    except UnicodeDecodeError:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"output '{name}' holds bytes that are not UTF-8 text; request it with "
            "parameters.binary_data true",
            field=name,
        ) from None

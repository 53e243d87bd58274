"""Open Inference Protocol tensors (JSON and Triton's binary extension) <-> numpy."""

from aimass.codecs.limits import RequestLimits
from aimass.codecs.request import (
    HEADER_LENGTH,
    decode_infer_request,
    parse_header_length,
    parse_json_object,
)
from aimass.codecs.response import EncodedResponse, encode_infer_response
from aimass.codecs.tensor import (
    decode_binary_tensor,
    decode_bytes_elements,
    decode_json_tensor,
    encode_binary_tensor,
    encode_bytes_elements,
    json_data,
    parse_datatype,
    parse_shape,
    tensor_datatype,
)

__all__ = [
    "HEADER_LENGTH",
    "EncodedResponse",
    "RequestLimits",
    "decode_binary_tensor",
    "decode_bytes_elements",
    "decode_infer_request",
    "decode_json_tensor",
    "encode_binary_tensor",
    "encode_bytes_elements",
    "encode_infer_response",
    "json_data",
    "parse_datatype",
    "parse_header_length",
    "parse_json_object",
    "parse_shape",
    "tensor_datatype",
]

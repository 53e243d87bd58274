"""HTTP bodies: bounded, decompressed request bodies and (optionally gzipped) responses.

A request body is read chunk by chunk and refused with PAYLOAD_TOO_LARGE as
soon as it (or its decompressed form, so a small gzip bomb cannot expand past
the limit) grows beyond ``max_bytes``. Only successful responses are ever
compressed: error bodies must stay readable by any client, however broken its
decompression.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from aimass.errors import AimassError, ErrorCode

__all__ = ["JSON", "json_response", "read_body", "success_response"]

JSON = "application/json"
"""The media type of every JSON body aimass sends."""

# Past this many times the limit we stop draining an oversize body and let the
# connection close; below it the client gets to read its 413.
_DRAIN_FACTOR = 4


def _too_large(limit: int) -> AimassError:
    return AimassError(
        ErrorCode.PAYLOAD_TOO_LARGE, f"request body is larger than the limit of {limit} bytes"
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, decompressed per ``Content-Encoding``, at most ``max_bytes``."""
    headers = request.headers
    declared = headers.get("content-length")
    oversize = declared is not None and declared.isdigit() and int(declared) > max_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            oversize = True
        if oversize:
            # Reading (and dropping) the rest lets the client finish sending and
            # read the 413 instead of failing on a reset connection.
            if size > max_bytes * _DRAIN_FACTOR:
                break
            continue
        chunks.append(chunk)
    if oversize:
        raise _too_large(max_bytes)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get("content-encoding")
    if encoding is None or encoding == "identity":
        return body
    return _decompress(body, encoding.strip().lower(), max_bytes)


def _decompress(body: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding not in ("gzip", "deflate"):
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none",
            field="Content-Encoding",
        )
    # wbits 47 accepts gzip and zlib headers; 15 is zlib-wrapped deflate.
    inflater = zlib.decompressobj(47 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"request body is not valid {encoding}: {exc}"
        ) from None
    if len(out) > max_bytes:
        raise _too_large(max_bytes)
    return out


def json_response(
    document: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised by orjson (numpy arrays included), never compressed."""
    return Response(
        orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        headers=headers,
        media_type=JSON,
    )


def success_response(
    request: Request,
    body: bytes,
    *,
    media_type: str = JSON,
    headers: dict[str, str] | None = None,
    gzip_min_bytes: int,
) -> Response:
    """A 200 response, gzipped when the client accepts it and the body is worth it."""
    if len(body) >= gzip_min_bytes and "gzip" in request.headers.get("accept-encoding", ""):
        # Level 1: most of the size win for a fraction of the CPU on the hot path.
        body = gzip.compress(body, compresslevel=1, mtime=0)
        headers = {**(headers or {}), "content-encoding": "gzip", "vary": "Accept-Encoding"}
    return Response(body, headers=headers, media_type=media_type)

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
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Send

from aimass.codecs import parse_json_object
from aimass.errors import AimassError, ErrorCode

__all__ = [
    "DECODE_OFF_LOOP_BYTES",
    "JSON",
    "VERSION_HEADER",
    "json_response",
    "read_body",
    "read_json_object",
    "receive_body",
    "send_success",
    "success_response",
]

JSON = "application/json"
"""The media type of every JSON body aimass sends."""

VERSION_HEADER = b"x-aimass-version"
"""The response header naming the version that answered an inference: ``{model}:{version}``."""

DECODE_OFF_LOOP_BYTES = 1024 * 1024
"""Bodies larger than this are decoded in a worker thread, smaller ones on the event loop.

Parsing a few megabytes takes tens of milliseconds, during which an event
loop serves nobody else; handing a small body to a thread costs more than
decoding it.
"""

# Past this many times the limit we stop draining an oversize body and let the
# connection close; below it the client gets to read its 413.
_DRAIN_FACTOR = 4


def _too_large(limit: int) -> AimassError:
    return AimassError(
        ErrorCode.PAYLOAD_TOO_LARGE, f"request body is larger than the limit of {limit} bytes"
    )


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, decompressed per ``Content-Encoding``, at most ``max_bytes``."""
    return await receive_body(request.receive, request.scope["headers"], max_bytes)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; INVALID_INPUT if it is not one."""
    body = await read_body(request, max_bytes)
    if len(body) > DECODE_OFF_LOOP_BYTES:
        document: dict[str, Any] = await run_in_threadpool(parse_json_object, body)
    else:
        document = parse_json_object(body)
    return document


async def receive_body(
    receive: Receive, headers: Iterable[tuple[bytes, bytes]], max_bytes: int
) -> bytes:
    """:func:`read_body` on a raw ASGI ``receive`` and header list.

    The hot path's body arrives in one message; that case costs one await
    and no copy. ClientDisconnect if the client leaves before it is sent.
    """
    declared: bytes | None = None
    encoding: bytes | None = None
    for name, value in headers:
        if name == b"content-length":
            declared = value
        elif name == b"content-encoding":
            encoding = value
    oversize = declared is not None and declared.isdigit() and int(declared) > max_bytes
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    more = message.get("more_body", False)
    if more or len(body) > max_bytes:
        body, oversize = await _receive_rest(receive, body, max_bytes, more=more, oversize=oversize)
    if oversize:
        raise _too_large(max_bytes)
    if encoding is None or encoding == b"identity":
        return body
    return _decompress(body, encoding.decode("latin-1").strip().lower(), max_bytes)


async def _receive_rest(
    receive: Receive, first: bytes, max_bytes: int, *, more: bool, oversize: bool
) -> tuple[bytes, bool]:
    chunks = [first]
    size = len(first)
    while True:
        if size > max_bytes:
            oversize = True
            # Reading (and dropping) the rest lets the client finish sending and
            # read the 413 instead of failing on a reset connection.
            chunks.clear()
            if size > max_bytes * _DRAIN_FACTOR:
                break
        if not more:
            break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if not oversize:
            chunks.append(chunk)
    return b"".join(chunks), oversize


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


def _gzipped(body: bytes, accept_encoding: str | None, gzip_min_bytes: int) -> bytes | None:
    if len(body) < gzip_min_bytes or accept_encoding is None or "gzip" not in accept_encoding:
        return None
    # Level 1: most of the size win for a fraction of the CPU on the hot path.
    return gzip.compress(body, compresslevel=1, mtime=0)


def success_response(
    request: Request,
    body: bytes,
    *,
    media_type: str = JSON,
    headers: dict[str, str] | None = None,
    gzip_min_bytes: int,
) -> Response:
    """A 200 response, gzipped when the client accepts it and the body is worth it."""
    compressed = _gzipped(body, request.headers.get("accept-encoding"), gzip_min_bytes)
    if compressed is not None:
        body = compressed
        headers = {**(headers or {}), "content-encoding": "gzip", "vary": "Accept-Encoding"}
    return Response(body, headers=headers, media_type=media_type)


_JSON_TYPE = (b"content-type", JSON.encode())
_GZIP = [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]


async def send_success(
    send: Send,
    body: bytes,
    *,
    content_type: tuple[bytes, bytes] = _JSON_TYPE,
    headers: list[tuple[bytes, bytes]] | None = None,
    accept_encoding: str | None,
    gzip_min_bytes: int,
) -> None:
    """:func:`success_response` sent straight as ASGI messages, for the hot path."""
    extra = headers or []
    compressed = _gzipped(body, accept_encoding, gzip_min_bytes)
    if compressed is not None:
        body = compressed
        extra = [*extra, *_GZIP]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [content_type, (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Errors to HTTP responses: the catalog mapped once for each protocol.

OIP bodies are ``{"error": "..."}``; OpenAI bodies are ``{"error": {"message",
"type", "param", "code"}}``. The status, the OpenAI type and whether to send
``Retry-After`` all come from :data:`aimass.errors.CATALOG`. A 5xx body says
only the catalog's public message and the request id; the log gets the rest.
Anything that is not an :class:`AimassError` is a bug: it is logged with its
traceback and the request id, and the client gets a public message quoting
that id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aimass.errors import AimassError, ErrorCode
from aimass.http.body import json_response

__all__ = [
    "Protocol",
    "client_request_id",
    "error_response",
    "failure_response",
    "request_id",
    "routing_error_handler",
]

logger = logging.getLogger("aimass.server")

_STATUS_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}

# What a client's id may be to be echoed and logged: short, and nothing a log
# line, a header or a terminal could take for structure.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class Protocol(StrEnum):
    """Which error body shape a route speaks."""

    OIP = "oip"
    OPENAI = "openai"


def client_request_id(value: bytes) -> str | None:
    """An ``X-Request-ID`` value as the request's id if it is safe to echo, else None.

    Safe: 1 to 128 characters of ``A-Z a-z 0-9 . _ : -``.
    """
    return value.decode("ascii") if _SAFE_ID.fullmatch(value) else None


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` (from raw ASGI headers) if it is safe, else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id":
            return client_request_id(value) or uuid.uuid4().hex
    return uuid.uuid4().hex


def error_response(exc: AimassError, protocol: Protocol, rid: str) -> Response:
    """The response for ``exc`` in ``protocol``'s body shape."""
    spec = exc.spec
    message = exc.public_message
    if spec.http_status >= 500:
        message = f"{message} (request id {rid})"
    headers = {"x-request-id": rid}
    if spec.retryable and spec.http_status in (429, 503):
        headers["retry-after"] = str(exc.details.get("retry_after", 1))
    if exc.code is ErrorCode.METHOD_NOT_ALLOWED and "allow" in exc.details:
        headers["allow"] = str(exc.details["allow"])
    if protocol is Protocol.OIP:
        return json_response({"error": message}, spec.http_status, headers)
    param = exc.details.get("param", exc.details.get("field"))
    body = {
        "error": {
            "message": message,
            "type": spec.openai_type,
            "param": param,
            "code": exc.code.value,
        }
    }
    return json_response(body, spec.http_status, headers)


def failure_response(exc: Exception, protocol: Protocol, rid: str) -> Response:
    """The response for whatever an endpoint raised: its own error, or a logged INTERNAL."""
    if not isinstance(exc, AimassError):
        logger.error("request %s failed", rid, exc_info=exc)
        exc = AimassError(ErrorCode.INTERNAL, "internal server error")
    elif exc.spec.http_status >= 500 and not exc.spec.retryable:
        logger.warning("request %s: %s", rid, exc.message)
    return error_response(exc, protocol, rid)


def routing_error_handler(
    protocol_for: Callable[[str], Protocol],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Starlette's handler of routing failures (no such path, wrong method), per path's protocol."""

    async def handle(request: Request, exc: Exception) -> Response:
        path = request.url.path
        rid = request_id(request.scope["headers"])
        protocol = protocol_for(path)
        if not isinstance(exc, HTTPException):
            return failure_response(exc, protocol, rid)
        method = request.method
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
        if code is ErrorCode.NOT_FOUND:
            error = AimassError(code, f"no route {method} {path}")
        elif code is ErrorCode.METHOD_NOT_ALLOWED:
            allow = (exc.headers or {}).get("Allow", "")
            error = AimassError(
                code, f"{method} is not allowed on {path}; use {allow}", allow=allow
            )
        else:
            error = AimassError(code, str(exc.detail))
        return error_response(error, protocol, rid)

    return handle
